//! tula's web UI (the `tula-ui` crate), served by `tula serve` under `/ui`: Load Balancing > L4 Virtual
//! IPs (list, create, edit, detail with backend setup), server-rendered HTML
//! with one small plain-JavaScript file and one stylesheet, both embedded.
//!
//! Every change goes through the same read-edit-apply step as the REST API
//! ([`AppState::edit`]), so the form is validated by the same code and applied
//! as one transaction.
//!
//! Modules:
//! Pages are [maud](https://docs.rs/maud) templates. maud was chosen over
//! askama because its templates are Rust expressions checked by the compiler
//! like any other code (a misspelt field or a wrong type fails the build),
//! every value spliced in is HTML-escaped unless wrapped in `PreEscaped`, and
//! the many small fragments this UI is made of stay plain functions beside
//! the code that computes them, with no template files or inheritance to learn.
//!
//! Every change is reviewed before it is applied (`review`): Save, a
//! backend's Drain/Activate/Disable, Remove and Roll back show the change
//! list and its warnings, and only Apply on that page applies it, based on the
//! revision the page was rendered from (a conflict is shown, never overwritten).
//!
//! Modules:
//! - `session`: login with the API token, the session cookie, CSRF checks.
//! - `layout`: the page shell and navigation, times, labels of config values.
//! - `list`: the VIP list (search, filters, pages, health) and the live status JSON it polls.
//! - `form`: the VIP create/edit form: parsing, errors by field, Save.
//! - `form_page`: that form as HTML.
//! - `review`: the review page, warnings, Apply, conflicts.
//! - `detail`: one VIP: backend health, counters, actions, return-traffic check.
//! - `setup`: the per-VIP "Backend setup" page.
//! - `revisions`: the history, two revisions side by side, rollback.
//! - `node`: in service or drained, BGP announcements, the cluster's nodes and rings.

mod detail;
mod form;
mod form_page;
mod layout;
mod list;
mod node;
mod review;
mod revisions;
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
use maud::html;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;

use tula_api::ApiError;
use tula_api::{panic_message, AppState};

pub(crate) use session::Sessions;

/// What the UI's handlers share: the API's state and the browser sessions.
#[derive(Clone)]
pub(crate) struct UiState {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
    /// How the saved config file differs from the running one, kept between pages.
    pub drift: Arc<list::DriftCache>,
}

/// The UI's routes, ready to merge beside the API (it has its own login, not bearer tokens).
pub fn router(app: AppState) -> Router {
    let state = UiState {
        app,
        sessions: Arc::new(Sessions::default()),
        drift: Arc::default(),
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
        .route("/ui/vips/{name}/state", post(detail::set_backend_state))
        .route("/ui/vips/{name}/setup", get(setup::page))
        .route(revisions::PATH, get(revisions::page))
        .route(node::PATH, get(node::page))
        .route("/ui/revisions/diff", get(revisions::diff))
        .route("/ui/revisions/rollback", post(revisions::rollback))
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
        // Pages, the script and the stylesheet go gzipped to browsers that take it.
        .layer(CompressionLayer::new().gzip(true))
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
        // Not no-referrer: with it a browser sends `Origin: null` on the UI's
        // own form posts, and the daemon refuses changes from another origin.
        ("referrer-policy", "same-origin"),
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
            ..
        } = self.0;
        let body = html! {
            h1 { (status.canonical_reason().unwrap_or("Error")) }
            p.alert.alert-error role="alert" { (message) }
            @if !errors.is_empty() {
                ul {
                    @for error in &errors {
                        li { (form::human_path(&error.path)) ": " (form::human_message(&error.message)) }
                    }
                }
            }
            p { a href=(list::PATH) { "Back to the L4 Virtual IPs" } }
        };
        let page = layout::Page::bare("Error").render(body);
        let status = if status.is_client_error() || status.is_server_error() {
            status
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        (status, axum::response::Html(page)).into_response()
    }
}
