//! Who may do what, over which channel:
//! - changes need a valid bearer token, or the Unix socket with a peer that
//!   is root or in the socket's group;
//! - reads need the token too, unless the TCP listener is on loopback;
//! - a change must be sent as JSON (or TOML for a whole config): types a
//!   browser can only send cross-origin after a CORS preflight we never grant;
//! - the Host must be one of the daemon's own names or an address (DNS
//!   rebinding), and a browser's Origin must be the Host itself.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::channel::Peer;
use crate::error::ApiError;
use crate::state::AppState;

/// Media types a change may be sent as.
const CHANGE_TYPES: [&str; 2] = ["application/json", "application/toml"];

pub(crate) async fn check_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let changes = is_change(request.method());
    if changes {
        if let Err(response) = change_content_type(request.headers()) {
            return drained(request, response).await;
        }
    }
    if let Some(Peer::Socket(peer)) = peer_of(&request) {
        if peer.operator {
            return next.run(request).await;
        }
        tracing::warn!(uid = peer.uid, gid = peer.gid, pid = ?peer.pid, "API socket peer refused: neither root nor in the socket's group");
        let refusal = ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "uid {} (gid {}) may not use the API socket: only root and the socket's group may",
                peer.uid, peer.gid
            ),
        )
        .into_response();
        return drained(request, refusal).await;
    }
    let presented = match bearer_token(request.headers()) {
        Ok(presented) => presented,
        Err(message) => return drained(request, unauthorized(message)).await,
    };
    if presented.is_none() && !state.token_required && !changes {
        return next.run(request).await;
    }
    let configured = state.snapshot().config().api.token.clone();
    let refusal = match (presented, configured) {
        (None, _) if changes => unauthorized(
            "a change needs a bearer token: send \"Authorization: Bearer TOKEN\" with api.token from the daemon's config, \
             or use the CLI on the balancer, which talks over the API socket",
        ),
        (None, _) => unauthorized(
            "this API requires a bearer token: send \"Authorization: Bearer TOKEN\" with api.token from the daemon's config",
        ),
        (Some(presented), Some(configured)) if !same_token(presented.as_bytes(), configured.as_bytes()) => {
            unauthorized("the bearer token does not match api.token")
        }
        (Some(_), None) => unauthorized(
            "no api.token is configured, so no token is accepted; set api.token, or use the API socket on the balancer",
        ),
        _ => return next.run(request).await,
    };
    drained(request, refusal).await
}

/// Refuses requests for another Host (DNS rebinding) and changes a browser
/// sends from another origin. Covers the API and the web UI alike.
pub(crate) async fn check_origin(request: Request, next: Next) -> Response {
    if matches!(peer_of(&request), Some(Peer::Socket(_))) {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    if let Some(host) = &host {
        if !is_own_host(host) {
            tracing::warn!(host = %host.escape_debug(), "request refused: Host is not one of this daemon's names");
            let refusal = ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {host:?} is not this daemon's: use its address, localhost or {:?}",
                    hostname()
                ),
            )
            .into_response();
            return drained(request, refusal).await;
        }
    }
    if is_change(request.method()) {
        if let Some(origin) = request.headers().get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("(not text)");
            let authority = origin.split_once("://").map(|(_, a)| a);
            let same =
                matches!((authority, &host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h));
            if !same {
                tracing::warn!(origin = %origin.escape_debug(), "change refused: sent by a page of another origin");
                let refusal = ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("a change from a page of another origin ({origin}) is refused"),
                )
                .into_response();
                return drained(request, refusal).await;
            }
        }
    }
    next.run(request).await
}

/// Largest body read (and dropped) before a refusal is sent.
const DRAIN_BYTES: usize = 1024 * 1024;

/// `refusal`, after reading what the client sent: a connection closed with
/// unread data is reset, and the client would see that instead of the answer.
async fn drained(request: Request, refusal: Response) -> Response {
    let _ = axum::body::to_bytes(request.into_body(), DRAIN_BYTES).await;
    refusal
}

fn peer_of(request: &Request) -> Option<&Peer> {
    request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| &c.0)
}

/// Every method but the reads changes something (or could).
fn is_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn change_content_type(headers: &HeaderMap) -> Result<(), Response> {
    let sent = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = sent
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if CHANGE_TYPES.contains(&essence.as_str()) {
        return Ok(());
    }
    let sent = if sent.is_empty() {
        "none".to_string()
    } else {
        format!("{sent:?}")
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("a change must be sent with Content-Type application/json (or application/toml for a config), not {sent}"),
    )
    .into_response())
}

/// An address (with or without port), localhost, or this host's name.
fn is_own_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.parse::<u16>().is_ok() {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.');
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || hostname().is_some_and(|own| {
            name.eq_ignore_ascii_case(&own)
                || own
                    .split('.')
                    .next()
                    .is_some_and(|short| name.eq_ignore_ascii_case(short))
        })
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
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

    #[test]
    fn own_hosts_are_addresses_localhost_and_this_hosts_name() {
        for host in [
            "127.0.0.1:9100",
            "127.0.0.1",
            "[::1]:9100",
            "198.18.0.1:80",
            "localhost:9100",
            "LOCALHOST",
        ] {
            assert!(is_own_host(host), "{host}");
        }
        let own = hostname().unwrap();
        assert!(is_own_host(&format!("{own}:9100")));
        for host in [
            "evil.example:9100",
            "rebind.attacker.test",
            "127.0.0.1.nip.io:9100",
            "[evil]:80",
        ] {
            assert!(!is_own_host(host), "{host}");
        }
    }

    #[test]
    fn changes_must_be_json_or_toml() {
        let mut headers = HeaderMap::new();
        assert!(change_content_type(&headers).is_err(), "no type at all");
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            headers.insert(CONTENT_TYPE, refused.parse().unwrap());
            assert!(change_content_type(&headers).is_err(), "{refused}");
        }
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/TOML",
        ] {
            headers.insert(CONTENT_TYPE, accepted.parse().unwrap());
            assert!(change_content_type(&headers).is_ok(), "{accepted}");
        }
    }
}
