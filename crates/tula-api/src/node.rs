//! `/api/node`: this node in or out of service (`tula node drain|resume`)
//! and each VIP's BGP announcement (crates/tula-bgp).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use tula_bgp::{AnnounceOptions, Node, NodeStatus};
use tula_control::Control;

use crate::error::ApiError;
use crate::state::AppState;

/// A node that announces nothing and forgets a drain at exit (tests, and
/// daemons embedded without `tula serve`).
pub(crate) fn without_bgp(control: Arc<Control>) -> Arc<Node> {
    let readiness = Box::new(move || tula_bgp::readiness(&control));
    Arc::new(Node::start(AnnounceOptions::default(), readiness).expect("a node without BGP opens nothing"))
}

/// In service or not, each VIP's announcement, and the VIPs' packets so far.
pub(crate) async fn show(State(state): State<AppState>) -> Result<Json<NodeStatus>, ApiError> {
    state.blocking(|state| with_packets(state, state.node.status())).await.map(Json)
}

/// Withdraws every VIP; answers once the routes are gone.
pub(crate) async fn drain(State(state): State<AppState>) -> Result<Json<NodeStatus>, ApiError> {
    change(state, "draining", Node::drain).await
}

/// Announces again the VIPs this node can serve.
pub(crate) async fn resume(State(state): State<AppState>) -> Result<Json<NodeStatus>, ApiError> {
    change(state, "resuming", Node::resume).await
}

async fn change(
    state: AppState,
    what: &'static str,
    f: fn(&Node) -> Result<NodeStatus, tula_bgp::BgpError>,
) -> Result<Json<NodeStatus>, ApiError> {
    state
        .blocking(move |state| {
            let status = f(&state.node).map_err(|e| ApiError::internal(format!("{what} the node: {e}")))?;
            with_packets(state, status)
        })
        .await
        .map(Json)
}

fn with_packets(state: &AppState, mut status: NodeStatus) -> Result<NodeStatus, ApiError> {
    status.vip_packets = state.control.status()?.iter().map(|vip| vip.packets).sum();
    Ok(status)
}
