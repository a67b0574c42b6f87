//! Browser sessions: logging in with the API token, the session cookie, and
//! the CSRF token that every state-changing request must carry.
//!
//! A session is a random id in an HttpOnly, SameSite=Strict cookie; what it
//! grants is kept here, server-side, with an expiry. Login is needed whenever
//! the API needs a token (not on loopback) or one is configured; otherwise a
//! session is opened without one, so CSRF checks still apply.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;

use maud::html;

use crate::layout::Page;
use crate::{list, UiState};
use tula_api::same_token;
use tula_api::ApiError;

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "tula_session";
/// How long a session lasts from login (or from its first page without login).
const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Sessions kept at most; the oldest not logged in go first.
const MAX_SESSIONS: usize = 1024;
/// Largest form body the UI reads.
pub(crate) const MAX_FORM_BYTES: usize = 256 * 1024;
/// Header a script sends the CSRF token in (forms send the `csrf` field).
const CSRF_HEADER: &str = "x-csrf-token";

/// One browser's session, as handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub id: String,
    /// Sent back with every state-changing request.
    pub csrf: String,
    /// Logged in (or no login is needed).
    pub logged_in: bool,
    /// The api.token the session logged in with: a changed token ends it.
    token: Option<String>,
    created: Instant,
}

impl Session {
    /// True for a session that logged in with a token, which can log out.
    pub fn has_token(&self) -> bool {
        self.logged_in && self.token.is_some()
    }
}

/// Every open session by id.
#[derive(Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session `id`, unless it expired.
    fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(session) if session.created.elapsed() < LIFETIME => Some(session.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    fn open(&self, logged_in: bool, token: Option<String>) -> Session {
        let session = Session {
            id: random_hex(),
            csrf: random_hex(),
            logged_in,
            token,
            created: Instant::now(),
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.created.elapsed() < LIFETIME);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .values()
                .min_by_key(|s| (s.logged_in, s.created))
                .map(|s| s.id.clone())
                .expect("the map is not empty");
            sessions.remove(&oldest);
        }
        sessions.insert(session.id.clone(), session.clone());
        session
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// 32 random bytes from the kernel, as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn session_cookie(session: &Session) -> HeaderValue {
    let value = format!(
        "{COOKIE_NAME}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        session.id,
        LIFETIME.as_secs()
    );
    HeaderValue::from_str(&value).expect("hex ids are valid header text")
}

fn expired_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
    .expect("valid header text")
}

fn cookie_session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, id)| id.to_string())
}

/// Whether this daemon's UI asks for the token: when the API does, or one is configured.
async fn login_policy(ui: &UiState) -> Result<(bool, Option<String>), ApiError> {
    let (_, config) = ui.app.running().await?;
    let token = config.api.token;
    Ok((ui.app.token_required || token.is_some(), token))
}

/// The form fields of a urlencoded body, in order.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// Every UI request passes here: static files go through; anything else gets
/// a session (opened on a first page view), must be logged in where login is
/// needed, and a POST must carry the session's CSRF token.
pub(crate) async fn guard(State(ui): State<UiState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path.starts_with("/ui/static/") || matches!(path.as_str(), "/" | "/ui" | "/ui/") {
        return next.run(request).await;
    }
    let (login_required, token) = match login_policy(&ui).await {
        Ok(policy) => policy,
        Err(error) => return crate::UiError::from(error).into_response(),
    };
    let is_post = request.method() == Method::POST;
    let existing = cookie_session_id(request.headers()).and_then(|id| ui.sessions.get(&id));
    let (session, opened) = match existing {
        Some(session) => (session, false),
        None if is_post => {
            return forbidden(
                "your session has expired (or this browser does not keep cookies): reload the page and send the form again",
            )
        }
        None if login_required => (ui.sessions.open(false, None), true),
        None => (ui.sessions.open(true, None), true),
    };
    let allowed = session.logged_in && session.token == token;
    let mut request = request;
    if is_post {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return forbidden("the form is too large");
        };
        let from_header = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let sent = from_header.or_else(|| {
            form_pairs(&bytes)
                .into_iter()
                .find(|(key, _)| key == "csrf")
                .map(|(_, value)| value)
        });
        if !sent.is_some_and(|sent| same_token(sent.as_bytes(), session.csrf.as_bytes())) {
            tracing::warn!(path, "UI request refused: missing or wrong CSRF token");
            return forbidden(
                "this form did not come from this session (missing or wrong CSRF token): reload the page and send it again",
            );
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    if !allowed && path != "/ui/login" {
        if path.ends_with(".json") {
            let error = ApiError::new(StatusCode::UNAUTHORIZED, "log in at /ui/login first");
            return with_cookie(
                error.into_response(),
                opened.then(|| session_cookie(&session)),
            );
        }
        let response = Redirect::to("/ui/login").into_response();
        return with_cookie(response, opened.then(|| session_cookie(&session)));
    }
    request.extensions_mut().insert(session.clone());
    let response = next.run(request).await;
    with_cookie(response, opened.then(|| session_cookie(&session)))
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

fn forbidden(message: &str) -> Response {
    let body = html! {
        h1 { "Refused" }
        p.alert.alert-error role="alert" { (message) }
        p { a href=(list::PATH) { "Back to the L4 Virtual IPs" } }
    };
    (StatusCode::FORBIDDEN, Html(Page::bare("Refused").render(body))).into_response()
}

pub(crate) async fn login_page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
) -> Response {
    match login_policy(&ui).await {
        Ok((false, _)) => Redirect::to(list::PATH).into_response(),
        Ok(_) if session.logged_in => Redirect::to(list::PATH).into_response(),
        Ok(_) => Html(render_login(&session, None)).into_response(),
        Err(error) => crate::UiError::from(error).into_response(),
    }
}

/// POST: the token from the daemon's config opens a new session (a new id, so
/// an id planted before login is worthless).
pub(crate) async fn login(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    body: axum::body::Bytes,
) -> Response {
    let (required, token) = match login_policy(&ui).await {
        Ok(policy) => policy,
        Err(error) => return crate::UiError::from(error).into_response(),
    };
    if !required {
        return Redirect::to(list::PATH).into_response();
    }
    let sent = form_pairs(&body)
        .into_iter()
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    let matches = token
        .as_deref()
        .is_some_and(|token| !sent.is_empty() && same_token(sent.as_bytes(), token.as_bytes()));
    if !matches {
        tracing::warn!("UI login refused: wrong token");
        let message = if token.is_none() {
            "no api.token is configured, so nobody can log in; set api.token in the daemon's config"
        } else if sent.is_empty() {
            "enter the API token (api.token in the daemon's config)"
        } else {
            "that is not the API token (api.token in the daemon's config)"
        };
        let page = render_login(&session, Some(message));
        return (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    }
    ui.sessions.close(&session.id);
    let fresh = ui.sessions.open(true, token);
    tracing::info!("UI login");
    let response = Redirect::to(list::PATH).into_response();
    with_cookie(response, Some(session_cookie(&fresh)))
}

pub(crate) async fn logout(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
) -> Response {
    ui.sessions.close(&session.id);
    let response = Redirect::to("/ui/login").into_response();
    with_cookie(response, Some(expired_cookie()))
}

fn render_login(session: &Session, error: Option<&str>) -> String {
    let described = if error.is_some() { "e-token" } else { "h-token" };
    let body = html! {
        div.login {
            h1 { "Log in to tula" }
            form.card method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(session.csrf);
                div.field.has-error[error.is_some()] {
                    label for="f-token" { "API token" }
                    input #f-token name="token" type="password" autocomplete="current-password" required autofocus
                        aria-invalid=[error.map(|_| "true")] aria-describedby=(described);
                    p.hint #h-token { "The " code { "api.token" } " from the daemon's config file." }
                    @if let Some(message) = error {
                        p.error #e-token role="alert" { (message) }
                    }
                }
                button.primary type="submit" { "Log in" }
            }
        }
    };
    Page::bare("Log in").render(body)
}
