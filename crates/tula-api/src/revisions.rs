//! `/api/config` and `/api/revisions...`: the whole config (read, apply, diff)
//! and its numbered revisions (list, read one, roll back).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tula_config::Config;
use tula_control::{Diff, RevisionInfo};

use crate::error::{parse_json, ApiError};
use crate::state::{AppState, Replace};

/// A revision as the API shows it, the time in RFC 3339.
#[derive(Debug, Clone, Serialize)]
pub struct RevisionView {
    pub number: u64,
    pub time: String,
    pub source: String,
    pub summary: Vec<String>,
}

impl From<RevisionInfo> for RevisionView {
    fn from(info: RevisionInfo) -> RevisionView {
        RevisionView {
            number: info.number,
            time: humantime::format_rfc3339_seconds(info.time).to_string(),
            source: info.source,
            summary: info.summary,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApplyQuery {
    /// What made this change, recorded in the revision (e.g. `apply -f web.toml`).
    source: Option<String>,
}

pub(crate) async fn show_config(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (revision, config) = state.running().await?;
    Ok(Json(
        json!({ "revision": revision, "config": config.redacted() }),
    ))
}

/// PUT: Save and apply a whole config, JSON or (with `Content-Type: application/toml`) TOML.
pub(crate) async fn apply_config(
    State(state): State<AppState>,
    Query(query): Query<ApplyQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RevisionView>, ApiError> {
    let mut config = parse_config(&headers, &body)?;
    let (_, running) = state.running().await?;
    keep_redacted_token(&mut config, &running);
    let source = match query.source {
        Some(source) => format!("api: {}", crate::error::printable(&source)),
        None => "api: apply".to_string(),
    };
    let revision = state
        .replace(Replace::Apply {
            config: Box::new(config),
            source,
        })
        .await?;
    Ok(Json(revision))
}

/// POST: what applying this config would change; 422 if it would not validate.
pub(crate) async fn diff_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Diff>, ApiError> {
    let mut config = parse_config(&headers, &body)?;
    let diff = state
        .blocking(move |state| {
            let (_, running) = state.control.running();
            keep_redacted_token(&mut config, &running);
            state.control.validate(&config).map_err(ApiError::invalid)?;
            Ok(state.control.diff(&config))
        })
        .await?;
    Ok(Json(diff))
}

pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<RevisionView>>, ApiError> {
    let history = state.blocking(|state| Ok(state.control.history()?)).await?;
    Ok(Json(history.into_iter().map(RevisionView::from).collect()))
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
        "revision": info.map(RevisionView::from),
        "config": config.redacted(),
    })))
}

/// POST: apply revision N's config again, as a new revision.
pub(crate) async fn rollback(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<RevisionView>, ApiError> {
    let number = parse_number(&number)?;
    Ok(Json(state.replace(Replace::Rollback(number)).await?))
}

fn parse_number(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not a revision number")))
}

/// A config body: TOML when the content type says so, JSON otherwise.
fn parse_config(headers: &HeaderMap, body: &[u8]) -> Result<Config, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/toml") {
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("the TOML body is not UTF-8: {e}")))?;
        Config::from_toml_str(text).map_err(ApiError::undecodable)
    } else {
        parse_json(body)
    }
}

/// A config read from the API carries the token as its redacted form; sent back
/// unchanged, that means "keep the token", not "set it to asterisks".
fn keep_redacted_token(config: &mut Config, running: &Config) {
    if running.api.token.is_some() && config.api.token == running.redacted().api.token {
        config.api.token = running.api.token.clone();
    }
}
