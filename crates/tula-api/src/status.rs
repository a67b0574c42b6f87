//! `/api/status` and `/api/counters`: what the data plane is doing, read from its maps.

use axum::extract::State;
use axum::Json;
use serde_json::{Map, Value};
use tula_control::VipStatus;

use crate::error::ApiError;
use crate::state::AppState;

/// Every VIP with its backends: state, weight, health, active flows, packets and bytes.
pub(crate) async fn status(
    State(state): State<AppState>,
) -> Result<Json<Vec<VipStatus>>, ApiError> {
    Ok(Json(
        state.blocking(|state| Ok(state.control.status()?)).await?,
    ))
}

/// Every global data-plane counter by name, summed over CPUs.
pub(crate) async fn counters(
    State(state): State<AppState>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let counters = state
        .blocking(|state| Ok(state.control.counters()?))
        .await?;
    let by_name = counters
        .iter()
        .map(|(counter, value)| (counter.name().to_string(), Value::from(value)))
        .collect();
    Ok(Json(by_name))
}
