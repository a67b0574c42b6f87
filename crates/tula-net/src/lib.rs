//! Host networking through netlink and procfs: network namespaces, links,
//! addresses, routes, neighbours, link counters and sysctls.
//!
//! Every function acts in the network namespace of the *calling thread*: each
//! call opens its own netlink socket, and a socket belongs to the namespace of
//! the thread that made it. To act inside a namespace, call from
//! [`Netns::run`] (or a thread that has [`Netns::enter`]ed it).

mod genl;
mod link;
mod netns;
mod xdp;
pub mod sysctl;

pub use link::{
    add_address, add_bridge, add_ip6_tunnel, add_ipip_tunnel, add_neighbour, add_route, add_veth, addresses,
    del_address, delete_link, ip6_tunnel_request, ipip_tunnel_request, keep_neighbour_resolved, keep_route_resolved,
    add_table_route, del_table_route, link, link_stats, links, move_link, primary_ipv4, primary_ipv6, route_dev6, route_get,
    set_down, set_master, set_mtu, set_offload, set_up, table_routes, xdp_forwarding, Address, Link, LinkStats, Offload, RouteInfo,
};
pub use netns::{netns_list, under_ip_netns_exec, Netns};
pub use xdp::{
    link_xdp, native_xdp_supported, neighbour_state, LinkXdpState, VethPeer, XdpMode,
};

/// What went wrong, naming the object involved.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network interface {name:?} does not exist")]
    NoSuchLink { name: String },
    #[error("network namespace {name:?} does not exist")]
    NoSuchNetns { name: String },
    #[error("network namespace {name:?} already exists")]
    NetnsExists { name: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Netlink { what: String, message: String },
}

impl NetError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        NetError::Io {
            what: what.into(),
            source,
        }
    }

    /// The errno a failed netlink or system call returned, if it was one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
