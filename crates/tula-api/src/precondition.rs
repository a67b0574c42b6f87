//! Optimistic concurrency over HTTP: every API response carries the running
//! revision as its `ETag` (`"12"`), and a state-changing request may send
//! `If-Match: "12"` (or `12`) to say which revision it was decided on. A
//! stale one is refused with `412 Precondition Failed` and the changes made
//! since (see `error.rs`); `If-Match: *` or no header means "whatever runs".

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{ETAG, IF_MATCH};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;

/// The revision named by the request's `If-Match`, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<IfMatch, ApiError> {
        match parts.headers.get(IF_MATCH) {
            None => Ok(IfMatch(None)),
            Some(value) => value
                .to_str()
                .ok()
                .and_then(parse_revision_tag)
                .map(IfMatch)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "If-Match {value:?} is not a revision: send the ETag of a response (e.g. \"12\"), or * for any"
                    ))
                }),
        }
    }
}

/// `"12"`, `W/"12"` or `12` -> `Some(Some(12))`; `*` -> `Some(None)`; anything else `None`.
pub(crate) fn parse_revision_tag(text: &str) -> Option<Option<u64>> {
    let text = text.trim();
    if text == "*" {
        return Some(None);
    }
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse().ok().map(Some)
}

/// Adds `ETag: "<running revision>"` to every response that has none.
pub(crate) async fn etag(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if !response.headers().contains_key(ETAG) {
        let tag = format!("\"{}\"", state.control.running_revision());
        if let Ok(value) = HeaderValue::from_str(&tag) {
            response.headers_mut().insert(ETAG, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_tags_parse_quoted_weak_bare_and_any() {
        assert_eq!(parse_revision_tag("\"12\""), Some(Some(12)));
        assert_eq!(parse_revision_tag("W/\"7\""), Some(Some(7)));
        assert_eq!(parse_revision_tag(" 3 "), Some(Some(3)));
        assert_eq!(parse_revision_tag("*"), Some(None));
        assert_eq!(parse_revision_tag("\"abc\""), None);
        assert_eq!(parse_revision_tag("-1"), None);
    }
}
