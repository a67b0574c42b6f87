//! The running state of a load balancer, between the operator's declared
//! config and the XDP data plane: Save and apply as one transaction, numbered
//! revisions, and the status an operator reads back.
//!
//! INTERFACE SKETCH (the lead's contract for the API/CLI helper; the control
//! helper implements it and may refine names, but must report any change).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;
use tula_config::{BackendState, Config, ConfigErrors};

/// Where the daemon keeps its state.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// The saved config (default /etc/tula/tula.toml). Created on first apply.
    pub config_path: PathBuf,
    /// Revisions and backend-id assignments (default /var/lib/tula).
    pub state_dir: PathBuf,
}

/// One saved revision.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RevisionInfo {
    pub number: u64,
    pub time: SystemTime,
    /// What made it: "apply -f FILE", "api: drain web/198.18.11.2", "rollback to 3", ...
    pub source: String,
    /// One line per change, e.g. "+ vips[web].backends[198.18.14.2]".
    pub summary: Vec<String>,
}

/// What applying a config would change, path by path.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Diff {
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    /// `+` added, `-` removed, `~` changed.
    pub op: char,
    /// e.g. `vips[web].backends[198.18.11.2].weight`
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Per-VIP status, as `tula status` and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VipStatus {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: tula_config::Protocol,
    pub dsr_type: tula_config::DsrType,
    pub scheduler: tula_config::Scheduler,
    pub packets: u64,
    pub bytes: u64,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendStatus {
    pub address: IpAddr,
    pub weight: u32,
    pub state: BackendState,
    /// Health as the health checker last saw it (issue 5); true until then.
    pub healthy: bool,
    /// Connection-table entries pointing at it.
    pub active_flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the config is invalid:\n{0}")]
    Invalid(ConfigErrors),
    #[error("no revision {0}")]
    NoSuchRevision(u64),
    #[error("programming the data plane failed, rolled back to revision {rolled_back_to}: {message}")]
    Dataplane { message: String, rolled_back_to: u64 },
    #[error("{what}: {source}")]
    Io { what: String, #[source] source: std::io::Error },
}

/// The load balancer's running state. Methods take `&self` (it locks inside),
/// so the API shares one `Arc<Control>` between handlers.
pub struct Control {
    _private: (),
}

impl Control {
    /// Opens the state, adopts a pinned data plane (or loads a new one),
    /// and reconciles it to the saved config without flushing connections.
    pub fn start(_options: ControlOptions) -> Result<Control, ControlError> {
        todo!()
    }
    /// The config the data plane runs, and its revision number (0 = none yet).
    pub fn running(&self) -> (u64, Config) {
        todo!()
    }
    /// The config file on disk (may differ from `running` if edited by hand).
    pub fn saved(&self) -> Result<Config, ControlError> {
        todo!()
    }
    /// Validates against this host (interfaces, local addresses, subnets).
    pub fn validate(&self, _config: &Config) -> Result<(), ConfigErrors> {
        todo!()
    }
    pub fn diff(&self, _config: &Config) -> Diff {
        todo!()
    }
    /// Save and apply: validate, program the data plane by diff (rolling back on
    /// failure), then write the file and the revision atomically.
    pub fn apply(&self, _config: Config, _source: &str) -> Result<RevisionInfo, ControlError> {
        todo!()
    }
    pub fn history(&self) -> Result<Vec<RevisionInfo>, ControlError> {
        todo!()
    }
    pub fn revision(&self, _number: u64) -> Result<Config, ControlError> {
        todo!()
    }
    pub fn rollback(&self, _number: u64) -> Result<RevisionInfo, ControlError> {
        todo!()
    }
    pub fn status(&self) -> Result<Vec<VipStatus>, ControlError> {
        todo!()
    }
    pub fn counters(&self) -> Result<tula_dataplane::Counters, ControlError> {
        todo!()
    }
    /// Removes every program, link and map (`tula dataplane unload`).
    pub fn unload(self) -> Result<(), ControlError> {
        todo!()
    }
}
