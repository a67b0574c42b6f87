//! `/api/interfaces`: each interface of the running config as the kernel sees
//! it (XDP mode, a veth's peer) with what is wrong, such as a veth whose peer
//! runs no XDP program, where every XDP_TX frame vanishes.

use axum::extract::State;
use axum::Json;
use tula_client::InterfaceStatus;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn interfaces(
    State(state): State<AppState>,
) -> Result<Json<Vec<InterfaceStatus>>, ApiError> {
    let interfaces = state
        .blocking(|state| {
            let (_, config) = state.control.running();
            Ok(config
                .interfaces
                .iter()
                .map(|name| tula_doctor::interface_status(name))
                .collect())
        })
        .await?;
    Ok(Json(interfaces))
}
