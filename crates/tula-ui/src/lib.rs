//! tula's web UI (the `tula-ui` crate), served by `tula serve` under `/ui`: Load Balancing > L4 Virtual
//! IPs (list, create, edit, detail with backend setup), server-rendered HTML
//! with one small plain-JavaScript file and one stylesheet, both embedded.
//!
//! Every change goes through the same read-edit-apply step as the REST API
//! ([`AppState::edit`]), so the form is validated by the same code and applied
//! as one transaction.
//!
//! Modules:
//! - `session`: login with the API token, the session cookie, CSRF checks.
//! - `layout`: HTML escaping, the page shell and navigation.
//! - `list`: the VIP list and the live status JSON it polls.
//! - `form`: the VIP create/edit form: parsing, errors by field, Save and apply.
//! - `form_page`: that form as HTML.
//! - `detail`: one VIP: backend health, counters, actions, return-traffic check.
//! - `setup`: the per-VIP "Backend setup" panel.

mod detail;
mod form;
mod form_page;
mod layout;
mod list;
mod session;
mod setup;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use tula_api::ApiError;
use tula_api::{panic_message, AppState};

pub(crate) use session::Sessions;

/// What the UI's handlers share: the API's state and the browser sessions.
#[derive(Clone)]
pub(crate) struct UiState {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
}

/// The UI's routes, ready to merge beside the API (it has its own login, not bearer tokens).
pub fn router(app: AppState) -> Router {
    let state = UiState {
        app,
        sessions: Arc::new(Sessions::default()),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to(list::PATH) }))
        .route("/ui", get(|| async { Redirect::to(list::PATH) }))
        .route("/ui/", get(|| async { Redirect::to(list::PATH) }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route(list::PATH, get(list::page))
        .route("/ui/status.json", get(list::status_json))
        .route("/ui/vips/new", get(form::new_page).post(form::create))
        .route("/ui/vips/{name}", get(detail::page))
        .route(
            "/ui/vips/{name}/edit",
            get(form::edit_page).post(form::update),
        )
        .route("/ui/vips/{name}/delete", post(detail::delete))
        .route(
            "/ui/vips/{name}/backends/{address}/state",
            post(detail::set_backend_state),
        )
        .route("/ui/revisions", get(list::revisions))
        .route("/ui/static/ui.css", get(stylesheet))
        .route("/ui/static/ui.js", get(script))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            session::guard,
        ))
        .layer(CatchPanicLayer::custom(|panic| {
            let message = panic_message(panic);
            tracing::error!("a UI request panicked: {message}");
            UiError::from(ApiError::internal(format!("internal error: {message}"))).into_response()
        }))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

const CSS: &str = include_str!("static/ui.css");
const JS: &str = include_str!("static/ui.js");

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

/// Pages run only our own script and style, are never framed, and are not cached.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A failed UI request, shown as an HTML page with the API's message.
pub(crate) struct UiError(ApiError);

impl From<ApiError> for UiError {
    fn from(error: ApiError) -> UiError {
        UiError(error)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let ApiError {
            status,
            message,
            errors,
        } = self.0;
        let mut body = format!(
            "<h1>{}</h1>\n<p class=\"alert alert-error\" role=\"alert\">{}</p>\n",
            layout::esc(status.canonical_reason().unwrap_or("Error")),
            layout::esc(&message)
        );
        if !errors.is_empty() {
            body.push_str("<ul>\n");
            for error in &errors {
                body.push_str(&format!("<li>{}</li>\n", layout::esc(&error.to_string())));
            }
            body.push_str("</ul>\n");
        }
        body.push_str(&format!(
            "<p><a href=\"{}\">Back to the L4 Virtual IPs</a></p>\n",
            list::PATH
        ));
        let page = layout::Page::bare("Error").render(&body);
        let status = if status.is_client_error() || status.is_server_error() {
            status
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        (status, axum::response::Html(page)).into_response()
    }
}
