//! `/api/config` and `/api/revisions...`: the whole config (read, apply, diff)
//! and its numbered revisions (list, read one, roll back).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tula_config::Config;
use tula_client::Revision;
use tula_control::{Diff, RevisionInfo};

use crate::error::{parse_json, ApiError};
use crate::precondition::IfMatch;
use crate::state::{AppState, Replace};
use crate::vips::json_text;

/// A revision as the API shows it (the client crate's model), the time in RFC 3339.
pub fn revision_record(info: RevisionInfo) -> Revision {
    Revision {
        number: info.number,
        time: humantime::format_rfc3339_seconds(info.time).to_string(),
        source: info.source,
        summary: info.summary,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApplyQuery {
    /// What made this change, recorded in the revision (e.g. `apply -f web.toml`).
    source: Option<String>,
    /// Apply even if the file names an older base revision than the running one.
    #[serde(default)]
    force: bool,
}

/// `{"revision": N, "config": {...}}`, the config's JSON encoded once per revision.
pub(crate) async fn show_config(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshot();
    let config = snapshot.config_json();
    let mut text = String::with_capacity(config.len() + 32);
    text.push_str(&format!(
        "{{\"revision\":{},\"config\":",
        snapshot.revision()
    ));
    text.push_str(&config);
    text.push('}');
    json_text(text.into())
}

/// PUT: Save and apply a whole config, JSON or (with `Content-Type: application/toml`) TOML.
///
/// The revision it was based on comes from `If-Match`, or else from the
/// body: a TOML file whose first line is `# running revision N` or
/// `# revision N, ...` (as `tula config show` writes it), or a JSON body of
/// the shape `GET /api/config` answers (`{"revision": N, "config": {...}}`).
/// A base older than the running revision is a 412 unless `?force=true`.
pub(crate) async fn apply_config(
    State(state): State<AppState>,
    IfMatch(if_match): IfMatch,
    Query(query): Query<ApplyQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Revision>, ApiError> {
    let (mut config, declared) = parse_config(&headers, &body)?;
    let based_on = match (if_match, query.force) {
        (Some(revision), _) => Some(revision),
        (None, false) => declared,
        (None, true) => None,
    };
    keep_redacted_token(&mut config, state.snapshot().config());
    let source = match query.source {
        Some(source) => format!("api: {}", crate::error::printable(&source)),
        None => "api: apply".to_string(),
    };
    let revision = state
        .replace(
            Replace::Apply {
                config: Box::new(config),
                source,
            },
            based_on,
        )
        .await?;
    Ok(Json(revision))
}

/// POST: what applying this config would change; 422 if it would not validate.
pub(crate) async fn diff_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Diff>, ApiError> {
    let (mut config, _) = parse_config(&headers, &body)?;
    let diff = state
        .blocking(move |state| {
            keep_redacted_token(&mut config, state.snapshot().config());
            state.control.validate(&config).map_err(ApiError::invalid)?;
            Ok(state.control.diff(&config))
        })
        .await?;
    Ok(Json(diff))
}

pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<Revision>>, ApiError> {
    let history = state.blocking(|state| Ok(state.control.history()?)).await?;
    Ok(Json(history.into_iter().map(revision_record).collect()))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let number = parse_number(&number)?;
    let (info, config) = state
        .blocking(move |state| {
            let config = state.control.revision(number)?;
            let info = state
                .control
                .history()?
                .into_iter()
                .find(|r| r.number == number);
            Ok((info, config))
        })
        .await?;
    Ok(Json(json!({
        "revision": info.map(revision_record),
        "config": config.redacted(),
    })))
}

/// POST: apply revision N's config again, as a new revision.
pub(crate) async fn rollback(
    State(state): State<AppState>,
    IfMatch(based_on): IfMatch,
    Path(number): Path<String>,
) -> Result<Json<Revision>, ApiError> {
    let number = parse_number(&number)?;
    Ok(Json(
        state.replace(Replace::Rollback(number), based_on).await?,
    ))
}

fn parse_number(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not a revision number")))
}

/// A config body, TOML when the content type says so, JSON otherwise, and
/// the base revision it declares (see [`apply_config`]).
fn parse_config(headers: &HeaderMap, body: &[u8]) -> Result<(Config, Option<u64>), ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/toml") {
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("the TOML body is not UTF-8: {e}")))?;
        let config = Config::from_toml_str(text).map_err(ApiError::undecodable)?;
        Ok((config, toml_base_revision(text)))
    } else {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Based {
            revision: u64,
            config: Config,
        }
        // The shape GET /api/config answers, sent back edited.
        let value: Value = parse_json(body)?;
        if value.get("revision").is_some_and(Value::is_u64) && value.get("config").is_some() {
            let based: Based = crate::error::from_json_value(value)?;
            return Ok((based.config, Some(based.revision)));
        }
        Ok((crate::error::from_json_value(value)?, None))
    }
}

/// N from a first line `# running revision N` or `# revision N, ...`.
fn toml_base_revision(text: &str) -> Option<u64> {
    let first = text.lines().next()?.trim().strip_prefix('#')?.trim();
    let rest = first
        .strip_prefix("running revision")
        .or_else(|| first.strip_prefix("revision"))?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A config read from the API carries the token as its redacted form; sent back
/// unchanged, that means "keep the token", not "set it to asterisks".
fn keep_redacted_token(config: &mut Config, running: &Config) {
    if running.api.token.is_some() && config.api.token == running.redacted().api.token {
        config.api.token = running.api.token.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::toml_base_revision;

    #[test]
    fn a_toml_file_names_its_base_revision_on_its_first_line() {
        assert_eq!(
            toml_base_revision("# running revision 12\nring_size = 251\n"),
            Some(12)
        );
        assert_eq!(
            toml_base_revision("# revision 3, 2026-12-02T06:00:00Z, api: apply\n"),
            Some(3)
        );
        assert_eq!(
            toml_base_revision("ring_size = 251\n# running revision 12\n"),
            None
        );
        assert_eq!(toml_base_revision("# my notes\n"), None);
    }
}
