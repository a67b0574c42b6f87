//! The route table and the layers around it: authentication, panics turned
//! into 500s, and every error (unknown route, wrong method, bad path) as JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::http::header::{ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tula_control::Control;
use tula_health::Checker;

use crate::error::ApiError;
use crate::state::{panic_message, AppState};
use crate::{cluster, health, interfaces, metrics, node, openapi, revisions, status, vips};

/// One route: a method on a path (axum's `{name}` syntax, as in OpenAPI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
}

/// Every route the API serves.
pub fn routes() -> Vec<Route> {
    route_table().into_iter().map(|(route, _)| route).collect()
}

fn route_table() -> Vec<(Route, MethodRouter<AppState>)> {
    use Method as M;
    fn route<H, T>(
        method: Method,
        path: &'static str,
        handler: H,
    ) -> (Route, MethodRouter<AppState>)
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
        (Route { method, path }, on(filter, handler))
    }
    const VIP: &str = "/api/vips/{name}";
    const BACKENDS: &str = "/api/vips/{name}/backends";
    const BACKEND: &str = "/api/vips/{name}/backends/{address}";
    vec![
        route(M::GET, "/api/vips", vips::list),
        route(M::POST, "/api/vips", vips::create),
        route(M::GET, VIP, vips::show),
        route(M::PUT, VIP, vips::replace),
        route(M::PATCH, VIP, vips::update),
        route(M::DELETE, VIP, vips::remove),
        route(M::GET, BACKENDS, vips::list_backends),
        route(M::POST, BACKENDS, vips::add_backend),
        route(M::GET, BACKEND, vips::show_backend),
        route(M::PATCH, BACKEND, vips::update_backend),
        route(M::DELETE, BACKEND, vips::remove_backend),
        route(
            M::POST,
            "/api/vips/{name}/backends/{address}/drain",
            vips::drain_backend,
        ),
        route(
            M::GET,
            "/api/vips/{name}/backends/{address}/health",
            health::backend,
        ),
        route(M::GET, "/api/config", revisions::show_config),
        route(M::PUT, "/api/config", revisions::apply_config),
        route(M::POST, "/api/config/diff", revisions::diff_config),
        route(M::GET, "/api/revisions", revisions::list),
        route(M::GET, "/api/revisions/{number}", revisions::show),
        route(
            M::POST,
            "/api/revisions/{number}/rollback",
            revisions::rollback,
        ),
        route(M::GET, "/api/status", status::status),
        route(M::GET, "/api/counters", status::counters),
        route(M::GET, "/api/interfaces", interfaces::interfaces),
        route(M::GET, "/api/node", node::show),
        route(M::GET, "/api/cluster", cluster::show),
        route(M::POST, "/api/node/drain", node::drain),
        route(M::POST, "/api/node/resume", node::resume),
        route(M::GET, "/api/openapi.json", openapi::document),
        route(M::GET, "/metrics", metrics::metrics),
    ]
}

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Builds the web UI's routes on the API's state (`tula_ui::router`): the UI
/// crate builds on this one, so the daemon is handed its routes.
pub type UiRoutes = fn(AppState) -> Router;

/// The API for `control`, whose backends `health` checks, to be served on
/// `listen` (and the Unix socket, see [`crate::serve_api`]): reads need a
/// bearer token unless `listen` is a loopback address, changes need the token
/// or the socket.
pub fn router(control: Arc<Control>, health: Checker, listen: SocketAddr) -> Router {
    router_with_ui(control, health, listen, |_| Router::new())
}

/// [`router`], with the web UI that `ui` builds served beside it.
pub fn router_with_ui(
    control: Arc<Control>,
    health: Checker,
    listen: SocketAddr,
    ui: UiRoutes,
) -> Router {
    let node = crate::node::without_bgp(control.clone());
    router_with_node(control, health, listen, ui, node, None)
}

/// [`router_with_ui`] for a daemon whose node state (drain, BGP announcements)
/// `node` keeps, and, in a cluster, whose part in it `cluster` is.
pub fn router_with_node(
    control: Arc<Control>,
    health: Checker,
    listen: SocketAddr,
    ui: UiRoutes,
    node: Arc<tula_bgp::Node>,
    cluster: Option<Arc<tula_cluster::Member>>,
) -> Router {
    let mut state = AppState::new(control, health, !listen.ip().is_loopback(), node);
    if let Some(member) = cluster {
        state = state.with_cluster(member);
    }
    let mut router = Router::new();
    for (route, method_router) in route_table() {
        router = router.route(route.path, method_router);
    }
    let router = router
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::check_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::precondition::etag,
        ))
        // A whole config of 1,000 VIPs with 100 backends each is about 3.5 MB.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    // The web UI logs in with its own session cookie, so it sits beside the
    // bearer-token check and the JSON error layers, not under them. Merged in
    // this order, unknown paths keep the API's fallback (token, JSON 404).
    ui(state.clone())
        .merge(with_error_layers(router).with_state(state))
        .layer(middleware::from_fn(crate::auth::check_origin))
}

/// A panicking handler answers 500 (the daemon keeps serving), and every error is JSON.
fn with_error_layers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(CatchPanicLayer::custom(|panic| {
            let message = panic_message(panic);
            tracing::error!("a request panicked: {message}");
            ApiError::internal(format!("internal error: {message}")).into_response()
        }))
        .layer(middleware::from_fn(json_errors))
}

/// Rewrites every error that is not JSON yet (axum's own 404, 405 and extractor
/// rejections) into the API's error shape, naming the method and path.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match status {
        StatusCode::NOT_FOUND => format!("no route {method} {path}"),
        StatusCode::METHOD_NOT_ALLOWED => {
            // axum adds its Allow header only after this layer; the route table knows.
            let allowed: Vec<String> = routes()
                .into_iter()
                .filter(|r| Some(r.path) == matched.as_deref())
                .map(|r| r.method.to_string())
                .collect();
            format!(
                "{method} is not allowed on {path} (allowed: {})",
                allowed.join(", ")
            )
        }
        _ if !text.trim().is_empty() => text.trim().to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut rewritten = ApiError::new(status, message).into_response();
    for name in [ALLOW, WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// Serves `router` on loopback and GETs each path in turn: (status, body).
    async fn get_each(router: Router, paths: &[&'static str]) -> Vec<(u16, String)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let paths = paths.to_vec();
        let answers = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            paths
                .iter()
                .map(|path| {
                    let mut response = agent.get(format!("{base}{path}")).call().unwrap();
                    (
                        response.status().as_u16(),
                        response.body_mut().read_to_string().unwrap(),
                    )
                })
                .collect()
        })
        .await
        .unwrap();
        server.abort();
        answers
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
        let router: Router = with_error_layers(
            Router::new()
                .route(
                    "/boom",
                    get(|| async {
                        if std::hint::black_box(true) {
                            panic!("boom at the handler");
                        }
                        "unreachable"
                    }),
                )
                .route("/fine", get(|| async { "fine" })),
        );
        let answers = get_each(router, &["/boom", "/fine", "/missing"]).await;
        assert_eq!(answers[0].0, 500);
        let error: serde_json::Value = serde_json::from_str(&answers[0].1).unwrap();
        assert_eq!(error["error"], "internal error: boom at the handler");
        assert_eq!(answers[1], (200, "fine".to_string()));
        assert_eq!(answers[2].0, 404);
        assert!(
            answers[2].1.contains("no route GET /missing"),
            "{}",
            answers[2].1
        );
    }
}
