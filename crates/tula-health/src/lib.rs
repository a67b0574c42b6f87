//! Health checks for tula's backends. The checker probes every backend of
//! every VIP on the VIP's schedule (a TCP connect, an HTTP or HTTPS GET, or a
//! `tunnel` connect sent down the same DSR path as client traffic), turns the
//! results into up or down with rise/fall counts, and hands each change to
//! tula-control, which takes a down backend out of its VIP's ring.
//! docs/HEALTH.md describes the behaviour.
//!
//! Modules:
//! - `checker`: [`Checker`], the running checker: it follows the running
//!   config, schedules the probes and reports changes to [`tula_control::Control`].
//! - `tracker`: the rise/fall state machine of one backend, with its history and counts.
//! - `target`: what to probe for each (VIP, backend), from the config.
//! - `probe`: one probe of each type.
//! - `http`: the HTTP/1.1 request and response reader of http and https probes.
//! - `tls`: the TLS client settings of https probes.
//! - `tunnel`: the tc egress program that sends tunnel probes down the DSR path.

mod checker;
mod http;
mod probe;
mod target;
mod tls;
mod tracker;
mod tunnel;

pub use checker::Checker;
pub use tunnel::{PROBE_MARK_BASE, PROBE_MARK_MASK};

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tula_config::CheckType;

/// A backend's health as its checks decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Takes flows (as its config state allows). Every backend starts up.
    Up,
    /// Failed `fall` checks in a row: out of its VIP's ring, its flows re-hash.
    Down,
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthState::Up => "up",
            HealthState::Down => "down",
        })
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The backend answered as the check expects.
    Pass,
    /// It did not: refused, timed out, wrong status or body, TLS failure.
    Fail,
    /// The probe could not be sent from here (a local problem, such as no
    /// route to the VIP for a tunnel probe): counts neither way.
    Error,
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// When the probe finished.
    pub time: SystemTime,
    pub outcome: Outcome,
    /// What was seen, e.g. "connected", "status 503 is not in 200-399",
    /// "no answer within 1s".
    pub detail: String,
    /// How long the probe took.
    pub took: Duration,
}

/// A change of state, kept in the backend's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub time: SystemTime,
    pub from: HealthState,
    pub to: HealthState,
    /// The check result that completed the rise or fall.
    pub cause: CheckResult,
}

/// Counts of one backend's checks and changes, or of all backends'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CheckCounts {
    pub passed: u64,
    pub failed: u64,
    /// Probes that could not be sent ([`Outcome::Error`]).
    pub errors: u64,
    pub went_down: u64,
    pub went_up: u64,
}

/// A backend's health as `tula status`, the API and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendHealth {
    pub vip: String,
    pub address: IpAddr,
    pub check: CheckType,
    pub state: HealthState,
    /// Since when it has been in `state` (the checker's start for a backend never changed).
    pub since: SystemTime,
    pub last_result: Option<CheckResult>,
    /// The latest state changes, oldest first (at most [`HISTORY_LEN`]).
    pub history: Vec<Transition>,
    pub counts: CheckCounts,
}

/// State changes kept per backend.
pub const HISTORY_LEN: usize = 16;
