//! Browser sessions: logging in with the API token, the session cookie, and
//! the CSRF token that every state-changing request must carry.
//!
//! A session is a random id in an HttpOnly, SameSite=Strict cookie. Login is
//! needed whenever the API needs a token (not on loopback) or one is
//! configured; otherwise a session is opened without one, so CSRF checks
//! still apply.
//!
//! Only sessions opened by a login with the token are kept here, server-side,
//! with an expiry. A session opened by a cookieless request (before login, or
//! when no login is needed) is kept nowhere: its CSRF token is an HMAC of its
//! id under a key of this process. So a flood of cookieless requests costs no
//! memory, never evicts a logged-in session and never voids a login form
//! waiting to be sent.

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
use ring::hmac;

use crate::layout::Page;
use crate::{list, UiState};
use tula_api::same_token;
use tula_api::ApiError;

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "tula_session";
/// How long a session lasts from login (or from its first page without login).
const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Logged-in sessions kept at most (each needs the token); the oldest goes first.
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

/// The logged-in sessions by id, and the key that signs the CSRF tokens of
/// sessions that did not log in.
pub(crate) struct Sessions {
    logged_in: Mutex<HashMap<String, Session>>,
    anonymous_key: hmac::Key,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            logged_in: Mutex::default(),
            anonymous_key: hmac::Key::new(hmac::HMAC_SHA256, &random_bytes()),
        }
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.logged_in
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The session whose cookie carries `id`: a logged-in one that has not
    /// expired, else the anonymous session of that id if this process issued
    /// it, which grants what a cookieless request gets (`no_login_needed`).
    fn get(&self, id: &str, no_login_needed: bool) -> Option<Session> {
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(session) if session.created.elapsed() < LIFETIME => return Some(session.clone()),
            Some(_) => {
                sessions.remove(id);
            }
            None => {}
        }
        drop(sessions);
        let random = id.get(..32)?;
        let issued = self.anonymous_id(random) == id;
        issued.then(|| self.anonymous(id.to_string(), no_login_needed))
    }

    /// An anonymous id: 128 random bits (as hex) and 128 bits of their HMAC,
    /// so ids this process did not issue (a closed login's, a made-up one)
    /// are told apart without storing any.
    fn anonymous_id(&self, random: &str) -> String {
        let tag = hmac::sign(&self.anonymous_key, format!("id:{random}").as_bytes());
        format!("{random}{}", hex(&tag.as_ref()[..16]))
    }

    /// A session kept nowhere: its CSRF token is derived from its id.
    fn anonymous(&self, id: String, no_login_needed: bool) -> Session {
        let tag = hmac::sign(&self.anonymous_key, format!("csrf:{id}").as_bytes());
        Session {
            id,
            csrf: hex(tag.as_ref()),
            logged_in: no_login_needed,
            token: None,
            created: Instant::now(),
        }
    }

    /// A new session for a request without one: nothing is stored.
    fn open_anonymous(&self, no_login_needed: bool) -> Session {
        let id = self.anonymous_id(&hex(&random_bytes()[..16]));
        self.anonymous(id, no_login_needed)
    }

    /// A session after a login with `token`, kept until it expires, logs out
    /// or is the oldest of `MAX_SESSIONS`.
    fn open_logged_in(&self, token: Option<String>) -> Session {
        let session = Session {
            id: hex(&random_bytes()),
            csrf: hex(&random_bytes()),
            logged_in: true,
            token,
            created: Instant::now(),
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.created.elapsed() < LIFETIME);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .values()
                .min_by_key(|s| s.created)
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

    #[cfg(test)]
    fn stored(&self) -> usize {
        self.lock().len()
    }
}

/// 32 random bytes from the kernel.
fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes
}

fn hex(bytes: &[u8]) -> String {
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
    // From the snapshot: every request passes here, and a copy of the config is 100,000 backends at scale.
    let token = ui.app.snapshot().config().api.token.clone();
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
    let existing =
        cookie_session_id(request.headers()).and_then(|id| ui.sessions.get(&id, !login_required));
    let (session, opened) = match existing {
        Some(session) => (session, false),
        None if is_post => {
            return forbidden(
                "your session has expired (or this browser does not keep cookies): reload the page and send the form again",
            )
        }
        None => (ui.sessions.open_anonymous(!login_required), true),
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
    (
        StatusCode::FORBIDDEN,
        Html(Page::bare("Refused").render(body)),
    )
        .into_response()
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
    let fresh = ui.sessions.open_logged_in(token);
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
    let described = if error.is_some() {
        "e-token"
    } else {
        "h-token"
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_cookieless_requests_stores_nothing_and_evicts_no_login() {
        let sessions = Sessions::default();
        let logged_in = sessions.open_logged_in(Some("token".to_string()));
        let form = sessions.open_anonymous(false);
        for _ in 0..MAX_SESSIONS + 100 {
            sessions.open_anonymous(false);
        }
        assert_eq!(sessions.stored(), 1, "only the logged-in session is kept");
        let kept = sessions.get(&logged_in.id, false).expect("still logged in");
        assert!(kept.logged_in && kept.csrf == logged_in.csrf);
        let again = sessions
            .get(&form.id, false)
            .expect("the login form's session");
        assert!(!again.logged_in);
        assert_eq!(
            again.csrf, form.csrf,
            "its CSRF token still matches the form"
        );
    }

    #[test]
    fn an_anonymous_csrf_token_is_bound_to_its_id_and_to_this_process() {
        let sessions = Sessions::default();
        let one = sessions.open_anonymous(true);
        let two = sessions.open_anonymous(true);
        assert_ne!(one.csrf, two.csrf);
        assert_eq!(one.id.len(), 64);
        assert!(
            Sessions::default().get(&one.id, true).is_none(),
            "another process's id"
        );
        let mut forged = one.id.clone();
        forged.replace_range(..1, if forged.starts_with('0') { "1" } else { "0" });
        assert!(sessions.get(&forged, true).is_none(), "a made-up id");
        assert!(sessions.get("not-hex", true).is_none());
        assert!(sessions.get("é".repeat(40).as_str(), true).is_none());
        assert_eq!(sessions.get(&one.id, true).unwrap().csrf, one.csrf);
    }

    #[test]
    fn logged_in_sessions_are_bounded_oldest_first() {
        let sessions = Sessions::default();
        let first = sessions.open_logged_in(Some("t".to_string()));
        for _ in 0..MAX_SESSIONS {
            sessions.open_logged_in(Some("t".to_string()));
        }
        assert_eq!(sessions.stored(), MAX_SESSIONS);
        assert!(
            sessions.get(&first.id, false).is_none(),
            "the oldest login was evicted"
        );
    }
}
