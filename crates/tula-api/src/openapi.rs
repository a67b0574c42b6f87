//! `GET /api/openapi.json`: the OpenAPI 3 document of every route, written by
//! hand in `openapi.json` beside this file (a test checks it against the router).

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// The document's text.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub(crate) async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT)
}
