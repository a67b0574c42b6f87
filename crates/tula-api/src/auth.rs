//! Bearer-token authentication: required unless the API listens only on
//! loopback; on loopback a configured token is still checked when presented.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn check_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = match bearer_token(request.headers()) {
        Ok(presented) => presented,
        Err(message) => return unauthorized(message),
    };
    if presented.is_none() && !state.token_required {
        return next.run(request).await;
    }
    let configured = match state.running().await {
        Ok((_, config)) => config.api.token,
        Err(error) => return error.into_response(),
    };
    match (presented, configured) {
        (None, _) => unauthorized(
            "this API requires a bearer token: send \"Authorization: Bearer TOKEN\" with api.token from the daemon's config",
        ),
        (Some(presented), Some(configured)) if !same_token(presented.as_bytes(), configured.as_bytes()) => {
            unauthorized("the bearer token does not match api.token")
        }
        (Some(_), None) if state.token_required => unauthorized(
            "no api.token is configured, so this API (not on loopback) accepts no request; set api.token",
        ),
        _ => next.run(request).await,
    }
}

/// The token of an `Authorization: Bearer TOKEN` header, if there is one.
fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text")?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_string()))
        }
        _ => Err("the Authorization header must be \"Bearer TOKEN\""),
    }
}

/// Compares every byte whatever the first difference, so timing does not tell
/// how much of a guess was right (the length is not secret).
pub fn same_token(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        "Bearer realm=\"tula\""
            .parse()
            .expect("a valid header value"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"s3cret-token-123", b"s3cret-token-123"));
        assert!(!same_token(b"s3cret-token-123", b"s3cret-token-124"));
        assert!(!same_token(b"s3cret-token-123", b"s3cret-token-12"));
    }

    #[test]
    fn only_bearer_headers_carry_a_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), Ok(None));
        headers.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Ok(Some("abc".to_string())));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(bearer_token(&headers).is_err());
    }
}
