//! The REST API's request and response types: one serde model that the
//! daemon serialises and the CLI, the UI and the tests read.
//!
//! Modules: `status` (`GET /api/status`, `GET /api/interfaces`, a backend's
//! changes), `revisions` (revisions, configs and config diffs).

mod revisions;
mod status;

pub use revisions::{Change, Diff, Revision, RevisionConfig, RevisionOf};
pub use status::BackendChange;
pub use status::{
    BackendStatus, CheckCounts, Drain, CheckResult, HealthSummary, InterfaceStatus, VethPeerStatus,
    VipStatus,
};
