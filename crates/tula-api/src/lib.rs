//! tula's daemon: the REST API under `/api` (VIPs, backends, apply, diff,
//! revisions, status, backend health, counters, and its OpenAPI document),
//! Prometheus metrics at `/metrics`, and [`serve`], the body of `tula serve`,
//! which also runs the health checker.
//!
//! Every change made through the API edits a copy of the running config and
//! goes through [`tula_control::Control::apply`], so it is validated, saved and
//! programmed exactly like `tula apply -f FILE`.
//!
//! Modules:
//! - `router`: the route table, authentication, errors as JSON, panics caught.
//! - `vips`, `revisions`, `status`, `health`, `metrics`, `openapi`: the endpoints.
//! - `state`: what the handlers share, and the read-edit-apply step.
//! - `auth`: bearer tokens. `error`: the error shape. `daemon`: [`serve`].
//! - `ui`: the web UI under `/ui` (Load Balancing > L4 Virtual IPs).

mod auth;
mod daemon;
mod error;
mod health;
mod metrics;
mod openapi;
mod revisions;
mod router;
mod state;
mod status;
mod ui;
mod vips;

pub use daemon::{init_logging, serve, LogFormat, ServeError, ServeOptions};
pub use openapi::DOCUMENT as OPENAPI_DOCUMENT;
pub use router::{router, routes, Route};
