//! Backend host setup for tunnelled (L3 DSR) traffic: `tula decap setup|verify|teardown`.
//!
//! A backend behind tula receives client packets wrapped in an outer IPv4
//! header (IPIP). It must strip that header, own the VIP without answering
//! ARP for it, and accept packets whose source does not match its routes.
//! Two ways to strip the header:
//!
//! - [`Method::Kernel`]: the ipip module and its `tunl0` device, as the
//!   product description does it.
//! - [`Method::Xdp`]: tula's own XDP program (`bpf/decap.c`, see [`program`])
//!   on the uplink, for hosts without the ipip module.
//!
//! Setup is computed as a [`Plan`] of [`Change`]s from the host's current
//! state, then applied. That one model gives `--dry-run` (print the plan),
//! idempotency (a second plan is empty) and teardown (the applied changes are
//! recorded in a state file and undone in reverse).
//!
//! With `--mss-clamp`, setup also clamps the TCP MSS of the VIPs' SYN-ACKs
//! to what fits the tunnel (see [`mss_clamp`]).
//!
//! Everything acts on the network namespace of the calling thread.

pub mod cli;
mod change;
pub mod manual;
pub mod mss_clamp;
mod persist;
mod plan;
pub mod program;
mod state;
mod verify;

pub use change::Change;
pub use manual::{manual_script, manual_steps, ManualOptions, Step};
pub use persist::Persist;
pub use plan::{
    apply, default_uplink, plan_setup, setup, sysctls, teardown, Method, MssClamp, Plan, SetupOptions, SetupReport,
    TeardownReport,
};
pub use state::State;
pub use tula_net::ipip_tunnel_request;
pub use verify::{verify, Check, CheckStatus, VerifyOptions};

use std::net::IpAddr;
use std::path::PathBuf;

/// What went wrong, naming the object and saying how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum DecapError {
    #[error(transparent)]
    Net(#[from] tula_net::NetError),
    #[error("no VIP given: pass at least one --vip ADDR")]
    NoVips,
    #[error(
        "VIP {vip} is already on {device}, but tula puts it on {wanted}: remove it from {device} \
         first (`ip addr del {vip}/{prefix} dev {device}`), or do not use it as a VIP"
    )]
    VipOwnedElsewhere { vip: IpAddr, prefix: u8, device: String, wanted: String },
    #[error(
        "the ipip kernel module is not available on this host ({detail}); \
         use `tula decap setup --method xdp`, which decapsulates in XDP without it"
    )]
    NoIpipModule { detail: String },
    #[error(
        "the ip6_tunnel kernel module is not available on this host ({detail}); \
         use `tula decap setup --method xdp`, which decapsulates IP6IP6 and IPv4 in IPv6 in XDP without it"
    )]
    NoIp6TunnelModule { detail: String },
    #[error(
        "cannot tell which interface is the uplink (no default route; up interfaces: {candidates}): \
         pass --interface IFACE"
    )]
    NoUplink { candidates: String },
    #[error(
        "interface {interface} has no IPv4 address and no global IPv6 address, so no tunnel can end on it: \
         give it the address the load balancer sends to, or pass another --interface"
    )]
    NoTunnelAddress { interface: String },
    #[error(
        "interface {interface} has no global IPv6 address, and IPv6 VIPs arrive only in IP6IP6 to one: \
         give it the IPv6 address the load balancer sends to, or pass another --interface"
    )]
    NoTunnelAddress6 { interface: String },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Bpf { what: String, message: String },
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error(
        "nothing to tear down: no state file at {path} \
         (setup was not run on this host, or with another --root)"
    )]
    NoState { path: PathBuf },
    #[error("{flag}={mss} is below {min}, the smallest MSS every TCP accepts; give a larger one or none")]
    MssTooSmall { flag: &'static str, mss: u16, min: u16 },
}

impl DecapError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        DecapError::Io { what: what.into(), source }
    }

    pub(crate) fn bpf(what: impl Into<String>, err: impl std::fmt::Display) -> Self {
        DecapError::Bpf { what: what.into(), message: err.to_string() }
    }
}
