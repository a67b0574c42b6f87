//! Backends' health as the API shows it, from the health checker: `GET
//! /api/vips/{name}/backends/{address}/health` (state, since when, the last
//! check, the recent state changes and the counts), and the summary every
//! backend carries in `GET /api/status`. Times are RFC 3339, UTC.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use tula_config::CheckType;
use tula_health::{BackendHealth, CheckCounts, CheckResult, HealthState, Outcome, Transition};

use crate::error::ApiError;
use crate::state::AppState;
use crate::vips::{backend_index, find_vip, parse_address};

/// A checked backend's health without its history: what `/api/status` shows.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthSummary {
    pub check: CheckType,
    pub state: HealthState,
    /// Since when it has been in `state`.
    pub since: String,
    pub last_result: Option<ResultView>,
    pub counts: CheckCounts,
}

/// One backend's whole health record.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackendHealthView {
    pub vip: String,
    pub address: IpAddr,
    #[serde(flatten)]
    pub summary: HealthSummary,
    /// The latest state changes, oldest first.
    pub history: Vec<TransitionView>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ResultView {
    pub time: String,
    pub outcome: Outcome,
    pub detail: String,
    pub took_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TransitionView {
    pub time: String,
    pub from: HealthState,
    pub to: HealthState,
    /// The check result that completed the rise or fall.
    pub cause: ResultView,
}

/// `time` as RFC 3339 with milliseconds, UTC.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl From<&CheckResult> for ResultView {
    fn from(result: &CheckResult) -> ResultView {
        ResultView {
            time: rfc3339(result.time),
            outcome: result.outcome,
            detail: result.detail.clone(),
            // Microsecond resolution is plenty.
            took_ms: (result.took.as_micros() as f64) / 1000.0,
        }
    }
}

impl From<&Transition> for TransitionView {
    fn from(change: &Transition) -> TransitionView {
        TransitionView {
            time: rfc3339(change.time),
            from: change.from,
            to: change.to,
            cause: ResultView::from(&change.cause),
        }
    }
}

impl From<&BackendHealth> for HealthSummary {
    fn from(health: &BackendHealth) -> HealthSummary {
        HealthSummary {
            check: health.check,
            state: health.state,
            since: rfc3339(health.since),
            last_result: health.last_result.as_ref().map(ResultView::from),
            counts: health.counts,
        }
    }
}

impl From<&BackendHealth> for BackendHealthView {
    fn from(health: &BackendHealth) -> BackendHealthView {
        BackendHealthView {
            vip: health.vip.clone(),
            address: health.address,
            summary: HealthSummary::from(health),
            history: health.history.iter().map(TransitionView::from).collect(),
        }
    }
}

/// The checker's snapshot by (VIP, backend).
pub(crate) fn by_backend(snapshot: Vec<BackendHealth>) -> HashMap<(String, IpAddr), BackendHealth> {
    snapshot
        .into_iter()
        .map(|h| ((h.vip.clone(), h.address), h))
        .collect()
}

/// GET one backend's health record. 404 for an unknown backend, and for one
/// that is not checked (its VIP's check is `none`).
pub(crate) async fn backend(
    State(state): State<AppState>,
    Path((name, address)): Path<(String, String)>,
) -> Result<Json<BackendHealthView>, ApiError> {
    let address = parse_address(&address)?;
    let (_, config) = state.running().await?;
    let vip = find_vip(&config, &name)?;
    backend_index(vip, address)?;
    match state.health.backend(&name, address) {
        Some(health) => Ok(Json(BackendHealthView::from(&health))),
        None if vip.health_check.kind == CheckType::None => Err(ApiError::not_found(format!(
            "backend {address} of VIP {name:?} is not checked: the VIP's health_check type is none"
        ))),
        None => Err(ApiError::not_found(format!(
            "backend {address} of VIP {name:?} is not checked yet: the checker follows a new config within a second"
        ))),
    }
}
