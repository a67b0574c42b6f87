//! Scale-out: announcing each VIP's /32 by BGP through BIRD 2, only while this
//! node can serve it, and taking the node out of service (drain) and back.
//!
//! The mechanism (docs/CLUSTER.md says why): the daemon holds a TUN device
//! (`tula-vips`) open and keeps one route per announced VIP address out of it
//! in a routing table of its own (4242), which BIRD's `kernel` protocol
//! learns and its BGP sessions export. No rule points at that table, so the
//! balancer's own traffic never follows those routes. A TUN device lives only
//! while a process holds it: if the daemon dies, a small holder process keeps
//! it for a grace time (forwarding goes on after a plain stop), then exits,
//! and the device, its routes and BIRD's announcements vanish with it.
//!
//! Modules:
//! - `decide`: which addresses to announce, from what the node can serve (pure).
//! - `announcer`: [`Node`], the thread that keeps the table in step, drain and resume.
//! - `tun`: opening the TUN device.
//! - `hold`: the holder process that outlives the daemon by the grace time.
//! - `bird`: BIRD 2 configs for a node and for the lab's router.

pub mod announcer;
pub mod bird;
pub mod decide;
pub mod hold;
mod tun;

pub use announcer::{AnnounceOptions, Node, NodeStatus};
pub use decide::{Announcement, Readiness, VipReadiness};

/// Routing table the announced routes live in unless configured otherwise.
pub const DEFAULT_TABLE: u32 = 4242;
/// The TUN device the announced routes point out of.
pub const DEFAULT_DEVICE: &str = "tula-vips";

#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    #[error(transparent)]
    Net(#[from] tula_net::NetError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl BgpError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> BgpError {
        BgpError::Io { what: what.into(), source }
    }
}

/// What a node running `control` can serve: its data plane is loaded and
/// every configured interface is up with an XDP program, and per VIP whether
/// new flows have a backend that is up.
pub fn readiness(control: &tula_control::Control) -> Readiness {
    let serving = control.serving();
    let not_forwarding = if !serving.loaded {
        Some("no data plane is loaded".to_string())
    } else if serving.interfaces.is_empty() {
        Some("the config attaches the data plane to no interface".to_string())
    } else {
        serving.interfaces.iter().find_map(|ifname| match tula_net::xdp_forwarding(ifname) {
            Ok(true) => None,
            Ok(false) => Some(format!("interface {ifname} is down or has no XDP program")),
            Err(e) => Some(e.to_string()),
        })
    };
    Readiness {
        forwarding: not_forwarding.is_none(),
        not_forwarding,
        vips: serving
            .vips
            .into_iter()
            .map(|vip| VipReadiness {
                name: vip.name,
                address: vip.address,
                has_backend: vip.new_flows == tula_control::NewFlows::Backends,
            })
            .collect(),
    }
}
