//! tula's daemon: the REST API under `/api` (VIPs, backends, apply, diff,
//! revisions, status, backend health, counters, and its OpenAPI document),
//! Prometheus metrics at `/metrics`, and [`serve`], the body of `tula serve`,
//! which also runs the health checker.
//!
//! Every change made through the API goes to the control plane's one writer
//! ([`tula_control::Control::submit`]), so it is validated, saved and
//! programmed exactly like `tula apply -f FILE`. Reads use the published
//! [`tula_control::Snapshot`]. Every response carries the running revision
//! as its `ETag`; a change may name its base revision with `If-Match`.
//!
//! Modules:
//! - `router`: the route table, authentication, errors as JSON, panics caught.
//! - `vips`, `revisions`, `status`, `health`, `metrics`, `openapi`: the endpoints.
//! - `state`: what the handlers share, and the read-edit-apply step.
//! - `auth`: who may read and change what (token, socket peer, content type,
//!   Host and Origin). `channel`: the TCP and Unix socket listeners and their
//!   peers. `socket_client`: the CLI's side of the socket. `owner`: one daemon
//!   per state and pin dir. `error`: the error shape. `daemon`: [`serve`].
//! - `node`: `/api/node`: drain, resume and the VIPs' BGP announcements.
//! - `precondition`: `ETag` and `If-Match`.
//!
//! The web UI lives in the `tula-ui` crate, which builds on [`AppState`]; it is
//! served beside the API through [`router_with_ui`] and [`serve`]'s `ui` argument.

mod auth;
mod channel;
mod cluster;
mod daemon;
mod error;
mod health;
mod interfaces;
#[cfg(test)]
mod json_fuzz;
mod metrics;
mod node;
mod openapi;
mod owner;
mod precondition;
mod revisions;
mod router;
mod socket_client;
mod state;
mod status;
mod vips;

pub use auth::same_token;
pub use channel::{serve_api, ApiSocket, Peer, SocketError, SocketPeer, DEFAULT_SOCKET_PATH};
pub use daemon::{init_logging, serve, LogFormat, ServeError, ServeOptions};
pub use error::ApiError;
pub use openapi::DOCUMENT as OPENAPI_DOCUMENT;
pub use revisions::revision_record;
pub use owner::{lock_dir, DirLock, OwnerError};
pub use router::{router, router_with_node, router_with_ui, routes, Route, UiRoutes};
pub use socket_client::{socket_agent, SOCKET_BASE};
pub use state::{panic_message, AppState, Replace};
