//! `GET /api/cluster`: every node of this node's cluster (crates/tula-cluster):
//! its running revision, health view, announcements and ring digest per
//! VIP, with the mismatches; whether this node reaches etcd.

use axum::extract::State;
use axum::Json;
use tula_cluster::ClusterView;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn show(State(state): State<AppState>) -> Result<Json<ClusterView>, ApiError> {
    let Some(member) = state.cluster.clone() else {
        return Err(ApiError::not_found(
            "this node is not in a cluster: its config has no [cluster] section (docs/CLUSTER.md)",
        ));
    };
    tokio::task::spawn_blocking(move || member.view())
        .await
        .map(Json)
        .map_err(|e| ApiError::internal(format!("reading the cluster's state: {e}")))
}
