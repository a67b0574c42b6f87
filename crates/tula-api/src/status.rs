//! `/api/status` and `/api/counters`: what the data plane is doing, read from
//! its maps, with each backend's health as the checker sees it.

use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

use tula_control::MapReads;

use crate::error::ApiError;
use crate::health::{by_backend, HealthSummary};
use crate::state::AppState;

/// Every VIP (where its new flows go, its tunnel MTU and MSS, packets and
/// bytes, active flows and table entries) with its backends: state, weight,
/// healthy, active flows (seen within the window), table entries, when a
/// flow was last seen, packets, bytes, and `health` (null for a backend that
/// is not checked).
/// `?vip=NAME` keeps only that VIP; `?filter=TEXT` only the VIPs whose name
/// or address, or a backend's address, contains TEXT.
pub(crate) async fn status(
    State(state): State<AppState>,
    Query(only): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    let body = state
        .blocking(move |state| {
            let snapshot = state.control.snapshot();
            if let Some(name) = &only.vip {
                if snapshot.vip(name).is_none() {
                    return Err(ApiError::not_found(format!("no VIP {name:?}")));
                }
            }
            // Only the VIPs asked for have their counters read.
            let vips = snapshot.status_where(|v| only.keeps(v), MapReads::Traffic)?;
            let health = by_backend(state.health.snapshot());
            // Each VIP's tree is encoded as soon as it is made: at 1,000 x 100 the
            // trees of all VIPs at once took ~90 MB a request, the text takes 12.
            let mut out = b"[".to_vec();
            for vip in &vips {
                let mut value = serde_json::to_value(vip)
                    .map_err(|e| ApiError::internal(format!("VIP {:?} status: {e}", vip.name)))?;
                let rows = value["backends"].as_array_mut().into_iter().flatten();
                for (row, backend) in rows.zip(&vip.backends) {
                    let summary = health
                        .get(&(vip.name.clone(), backend.address))
                        .map(HealthSummary::from);
                    row["health"] = serde_json::to_value(summary).unwrap_or(Value::Null);
                }
                if out.len() > 1 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, &value)
                    .map_err(|e| ApiError::internal(format!("VIP {:?} status: {e}", vip.name)))?;
            }
            out.push(b']');
            Ok(out)
        })
        .await?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// What `GET /api/status` narrows to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusQuery {
    vip: Option<String>,
    filter: Option<String>,
}

impl StatusQuery {
    fn keeps(&self, vip: &tula_config::Vip) -> bool {
        if self.vip.as_ref().is_some_and(|name| name != &vip.name) {
            return false;
        }
        let Some(text) = &self.filter else {
            return true;
        };
        vip.name.contains(text.as_str())
            || vip.address.to_string().contains(text.as_str())
            || vip
                .backends
                .iter()
                .any(|b| b.address.to_string().contains(text.as_str()))
    }
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
