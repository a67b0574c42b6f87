//! `GET /api/status` (every VIP with its backends, traffic and health) and
//! `GET /api/interfaces` (each interface's XDP mode and what is wrong with it).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A VIP as `GET /api/status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipStatus {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: String,
    pub dsr_type: String,
    pub scheduler: String,
    pub packets: u64,
    pub bytes: u64,
    /// Its backends' active flows and connection-table entries, summed.
    #[serde(default)]
    pub active_flows: u64,
    #[serde(default)]
    pub table_entries: u64,
    /// A flow is active while its last packet is at most this many seconds old.
    #[serde(default)]
    pub active_window_s: u64,
    /// When the flows were sampled (RFC 3339); `None` before the first sample.
    #[serde(default)]
    pub flows_sampled_at: Option<String>,
    /// The largest client packet the tunnel carries to the backends, and the TCP MSS that fits.
    #[serde(default)]
    pub tunnel_mtu: Option<u16>,
    #[serde(default)]
    pub mss: Option<u16>,
    /// Whether the balancer answers ping (ICMP echo) to the VIP's address.
    #[serde(default)]
    pub icmp_echo: bool,
    /// Where new flows go: backends, or the all_down policy (dropped, kept-last, sorry) while none is up.
    #[serde(default = "backends_text")]
    pub new_flows: String,
    pub backends: Vec<BackendStatus>,
}

fn backends_text() -> String {
    "backends".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub address: IpAddr,
    pub weight: u32,
    pub state: String,
    pub healthy: bool,
    /// Flows that sent a packet within the VIP's `active_window_s`.
    pub active_flows: u64,
    /// Connection-table entries pointing at this backend, quiet flows
    /// included (they leave the table only when it needs their way).
    #[serde(default)]
    pub table_entries: u64,
    /// When a flow of it last sent a packet (RFC 3339), as far as the samples saw.
    #[serde(default)]
    pub last_flow_seen: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    /// The health checker's view; `None` when the backend is not checked.
    #[serde(default)]
    pub health: Option<HealthSummary>,
}

impl BackendStatus {
    /// Where a drain of this backend stands (`None` unless it is draining).
    pub fn drain(&self, vip: &VipStatus) -> Option<Drain> {
        (self.state == "drain").then(|| {
            Drain::of(self.active_flows, vip.flows_sampled_at.is_some(), self.last_flow_seen.clone())
        })
    }
}

/// Where a draining backend stands: its established flows still send, or
/// none has for the active-flow window (it can be taken out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drain<T = String> {
    /// No sample of the flows yet.
    Unknown,
    /// This many flows sent a packet within the window.
    Draining(u64),
    /// No flow within the window; the last one sent at this time (`None`: none seen).
    Drained(Option<T>),
}

impl<T> Drain<T> {
    pub fn of(active_flows: u64, sampled: bool, last_flow_seen: Option<T>) -> Drain<T> {
        match (sampled, active_flows) {
            (false, _) => Drain::Unknown,
            (true, 0) => Drain::Drained(last_flow_seen),
            (true, n) => Drain::Draining(n),
        }
    }
}

/// The body of `POST /api/vips/{name}/backends` (with its address) and of
/// `PATCH /api/vips/{name}/backends/{address}` (settings only): what is
/// `None` is left out, so it keeps its default or current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// active, drain or disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// A checked backend's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSummary {
    pub check: String,
    /// up or down.
    pub state: String,
    /// RFC 3339.
    pub since: String,
    pub last_result: Option<CheckResult>,
    pub counts: CheckCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub time: String,
    /// pass, fail or error.
    pub outcome: String,
    pub detail: String,
    pub took_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCounts {
    pub passed: u64,
    pub failed: u64,
    pub errors: u64,
    pub went_down: u64,
    pub went_up: u64,
}

/// An interface of the running config, as `GET /api/interfaces` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// native, generic, none (not attached), offload or multiple; `missing`
    /// when the interface does not exist.
    pub xdp_mode: String,
    /// The other end, when this is a veth.
    #[serde(default)]
    pub veth_peer: Option<VethPeerStatus>,
    /// What is wrong, one sentence each (e.g. a veth whose peer runs no XDP
    /// program: every XDP_TX frame is dropped). Empty when all is well.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The other end of a veth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VethPeerStatus {
    /// `None` when it could not be read.
    pub name: Option<String>,
    /// The peer's namespace id as the daemon sees it; `None`: the daemon's own namespace.
    pub netnsid: Option<i32>,
    /// Its XDP mode, as `xdp_mode`; `None` when it could not be read.
    pub xdp_mode: Option<String>,
}
