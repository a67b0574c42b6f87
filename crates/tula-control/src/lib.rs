//! The running state of a load balancer, between the operator's declared
//! config and the XDP data plane: Save and apply as one transaction, numbered
//! revisions, restart without dropping traffic, and the status an operator
//! reads back. docs/CONTROL.md describes the behaviour and the state files.
//!
//! Modules:
//! - `control`: [`Control`], its one writer (a thread that owns the data
//!   plane and takes every change through a queue, coalescing edits) and the
//!   operations on it.
//! - `snapshot`: [`Snapshot`], the indexed model of the running revision that
//!   readers share without a lock.
//! - `store`: the config file and the numbered revisions.
//! - `ids`: VIP and backend ids, saved so a restart keeps them.
//! - `plan`: config -> data-plane state, and state -> state as ordered operations.
//! - `program`: running operations on the data plane, reading its state back.
//! - `diff`: config -> config changes, path by path (`tula diff`), and the
//!   typed [`Delta`](diff) between two models.
//! - `health`: backend health as the checker reports it, and what `keep-last` remembers.
//! - `status`: per-VIP and per-backend status.
//! - `flows`: active flows, sampled from the connection table by a thread of their own.
//! - `host`: host facts for validation (interfaces, addresses, subnets).
//! - `files`: atomic file writes.
//!
//! Reads ([`Control::snapshot`]) never block. Changes run on the writer
//! thread, which [`Control::start`] creates in the calling thread's network
//! namespace (where netlink and XDP attachment act); the blocking methods
//! wait for it, [`Control::submit`] takes a callback instead so async code
//! needs no thread per waiting request.

mod control;
mod diff;
#[cfg(test)]
mod fake;
mod files;
mod flows;
mod health;
mod host;
mod ids;
mod placements;
mod plan;
mod program;
mod snapshot;
mod status;
mod store;
#[cfg(test)]
mod writer_tests;

pub use control::{limit_heap_arenas, ClusterStore, Command, Control, Edit, EditRefused, Reply};
pub use flows::{BackendFlows, FlowOptions, FlowSample, FlowSampler};
pub use host::host_facts;
pub use ids::{CapacityError, IdKind};
pub use program::ProgramError;
pub use snapshot::{Snapshot, Usage};
pub use status::MapReads;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;
use tula_config::{BackendState, ConfigErrors};

/// Where the daemon keeps its state.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// The saved config (default /etc/tula/tula.toml). Created on first apply.
    pub config_path: PathBuf,
    /// Revisions and backend-id assignments (default /var/lib/tula).
    pub state_dir: PathBuf,
}

/// Where the daemon keeps revisions and ids unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tula";

impl Default for ControlOptions {
    fn default() -> ControlOptions {
        ControlOptions {
            config_path: PathBuf::from(tula_config::DEFAULT_CONFIG_PATH),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// One saved revision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// Its backends' active flows and connection-table entries, summed.
    pub active_flows: u64,
    pub table_entries: u64,
    /// The active-flow window, in seconds (`tula serve --active-window`).
    pub active_window_s: u64,
    /// When the flow figures were sampled; `None` before the first sample.
    #[serde(serialize_with = "rfc3339")]
    pub flows_sampled_at: Option<SystemTime>,
    /// Where new flows go now: the backends, or the all_down policy while none is up.
    pub new_flows: NewFlows,
    /// Whether the balancer answers ping (ICMP echo) to the VIP's address.
    pub icmp_echo: bool,
    /// The largest client packet that reaches the backends whole: the path
    /// MTU toward them (the smallest MTU of the interfaces their routes leave
    /// by, or those interfaces' lower `path_mtu`) less the 20-byte outer
    /// header for L3 DSR; the path MTU itself for L2 DSR. What ICMP
    /// Fragmentation Needed reports. `None` while no backend has a route
    /// through an attached interface.
    pub tunnel_mtu: Option<u16>,
    /// The TCP MSS that fits the tunnel MTU (it - 40): what the backends
    /// should clamp to (`tula decap setup --mss-clamp=MSS`).
    pub mss: Option<u16>,
    pub backends: Vec<BackendStatus>,
}

/// Where a VIP's new flows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NewFlows {
    /// Spread over its active backends that are up (the normal case).
    Backends,
    /// Dropped: no backend can take them (`all_down = "drop"`, or nothing to keep).
    Dropped,
    /// Spread over the backends that were up last (`all_down = "keep-last"`).
    KeptLast,
    /// Sent to the sorry backend (`all_down = "sorry"`).
    Sorry,
}

/// What a node can serve right now ([`Control::serving`]).
#[derive(Debug, Clone, Default)]
pub struct Serving {
    /// A data plane is loaded (or adopted) by this daemon.
    pub loaded: bool,
    /// The interfaces the running config attaches it to.
    pub interfaces: Vec<String>,
    pub vips: Vec<VipServing>,
}

#[derive(Debug, Clone)]
pub struct VipServing {
    pub name: String,
    pub address: IpAddr,
    /// [`NewFlows::Backends`] while at least one of its backends is up and active.
    pub new_flows: NewFlows,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendStatus {
    pub address: IpAddr,
    pub weight: u32,
    pub state: BackendState,
    /// Health as the health checker last saw it (issue 5); true until then.
    pub healthy: bool,
    /// Flows that sent a packet within the active-flow window (the latest sample).
    pub active_flows: u64,
    /// Connection-table entries pointing at it, quiet flows included: they
    /// stay until the table needs their way.
    pub table_entries: u64,
    /// When a flow of it last sent a packet (as far as the samples saw);
    /// what a drain waits for.
    #[serde(serialize_with = "rfc3339")]
    pub last_flow_seen: Option<SystemTime>,
    pub packets: u64,
    pub bytes: u64,
}

fn rfc3339<S: serde::Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => s.serialize_str(&humantime::format_rfc3339_seconds(*time).to_string()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the config is invalid:\n{0}")]
    Invalid(ConfigErrors),
    #[error("no revision {0}")]
    NoSuchRevision(u64),
    #[error(
        "programming the data plane failed, rolled back to revision {rolled_back_to}: {source}"
    )]
    Dataplane {
        #[source]
        source: ProgramError,
        rolled_back_to: u64,
    },
    /// The config needs more VIPs or backends than the loaded data plane has room for.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// The change was based on a revision that is no longer the running one.
    #[error("the running config is revision {running}, not {based_on} as the change assumed: {} change(s) since; read it again and retry", since.len())]
    Conflict {
        based_on: u64,
        running: u64,
        /// The revisions made since `based_on` (those still kept), oldest first.
        since: Vec<RevisionInfo>,
    },
    /// The cluster's store (etcd) could not be asked to agree to the change,
    /// so nothing changed; the node keeps running its revision.
    #[error("the change was not saved: {0}")]
    ClusterUnavailable(String),
    /// An edit refused the running config (e.g. the backend it adds exists).
    #[error(transparent)]
    Refused(#[from] EditRefused),
    /// The writer has stopped (the daemon is shutting down).
    #[error("the control plane is shutting down")]
    Stopped,
    #[error("no VIP named {0:?} in the running config")]
    NoSuchVip(String),
    #[error("VIP {vip} has no backend {address} in the running config")]
    NoSuchBackend { vip: String, address: IpAddr },
    /// Loading, adopting, reading or unloading the data plane failed (not an apply).
    #[error("data plane in {}: {message}", pin_dir.display())]
    DataplaneIo { pin_dir: PathBuf, message: String },
    /// Walking the connection table for active flows failed.
    #[error("sampling active flows: {0}")]
    Flows(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
