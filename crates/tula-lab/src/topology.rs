//! The lab's network: who lives in which namespace, with which addresses,
//! and how to build and remove it.
//!
//! ```text
//!  client 198.18.0.2 ── 198.18.0.1 ┐
//!                                  router ── 198.18.1.1 ── 198.18.1.2 lb (XDP balancer)
//!  be1 198.18.11.2 ── 198.18.11.1 ─┤
//!  be2 198.18.12.2 ── 198.18.12.1 ─┤        (one routed subnet per backend: Layer 3 DSR)
//!  be3 198.18.13.2 ── 198.18.13.1 ─┘
//!  lb eth1 198.18.20.2, beN eth1 198.18.20.1N: a shared segment (bridge in the router) for Layer 2 DSR
//! ```
//!
//! The lab is dual-stack: every link also has IPv6 from 2001:db8::/32, the
//! IPv4 address 198.18.X.Y mirrored as 2001:db8:X::Y (client 2001:db8::2, lb
//! 2001:db8:1::2, beN 2001:db8:1N::2, the shared segment 2001:db8:20::/64),
//! so an IPv6 VIP reaches IPv6 backends in IP6IP6 and an IPv4 VIP can be
//! served by IPv6 backends in IPv4 in IPv6.
//!
//! With two load balancers (`tula lab up --lbs 2`), a second node `lb2`
//! (198.18.2.2, router side 198.18.2.1, L2 leg 198.18.20.3) runs beside the
//! first; each node's BIRD announces the VIPs by BGP to the router's BIRD
//! (IPv4 VIPs over an IPv4 session, IPv6 VIPs over an IPv6 one), which
//! installs one ECMP route per VIP over both nodes instead of the static
//! routes of the one-node lab.

use crate::LabError;
use std::net::{Ipv4Addr, Ipv6Addr};
use tula_net::{self as net, Netns, Offload};

/// The Layer 3 (IPIP) VIP.
pub const VIP_L3: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The Layer 2 VIP, served over the shared segment.
pub const VIP_L2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
/// The IPv6 VIP, served by the backends' IPv6 addresses over IP6IP6.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x10);
/// The IPv6 VIPs' subnet: routed to the load balancer (one node), or the
/// prefix the router accepts the nodes' IPv6 announcements from (two nodes).
pub const VIP6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0);
pub const VIP6_PREFIX: u8 = 64;
/// The mixed VIP: an IPv4 VIP served by the backends' IPv6 addresses (IPv4 in IPv6).
pub const VIP_MIXED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);
pub const VIP_PORT: u16 = 80;
/// The UDP VIP: the Layer 3 VIP's address, this port.
pub const VIP_UDP_PORT: u16 = 5353;
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The router's address on the client's subnet.
const CLIENT_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const LB_L2_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 2);
pub const CLIENT_ADDR6: Ipv6Addr = ipv6_of(CLIENT_ADDR);
pub const LB_ADDR6: Ipv6Addr = ipv6_of(LB_ADDR);
/// Every lab link's IPv6 subnet is a /64.
const PREFIX6: u8 = 64;

/// The IPv6 twin of a lab address: 198.18.X.Y is 2001:db8:X::Y (X and Y
/// written as hex digits read as decimal, so 198.18.11.2 is 2001:db8:11::2).
pub const fn ipv6_of(v4: Ipv4Addr) -> Ipv6Addr {
    let [_, _, x, y] = v4.octets();
    Ipv6Addr::new(0x2001, 0xdb8, decimal_as_hex(x), 0, 0, 0, 0, decimal_as_hex(y))
}

const fn decimal_as_hex(n: u8) -> u16 {
    (n as u16 / 100) << 8 | (n as u16 / 10 % 10) << 4 | n as u16 % 10
}

/// Puts `v4`/24 and its IPv6 twin/64 on `link`.
fn add_dual_stack(link: &str, v4: Ipv4Addr) -> Result<(), LabError> {
    net::add_address(link, v4.into(), 24)?;
    net::add_address(link, ipv6_of(v4).into(), PREFIX6)?;
    Ok(())
}

/// Default routes through `gateway` and its IPv6 twin.
fn add_default_routes(gateway: Ipv4Addr) -> Result<(), LabError> {
    net::add_route(Ipv4Addr::UNSPECIFIED, 0, Some(gateway), None)?;
    net::add_route(Ipv6Addr::UNSPECIFIED, 0, Some(ipv6_of(gateway)), None)?;
    Ok(())
}
pub const MAX_BACKENDS: u8 = 9;

/// Names and addresses of one lab; `prefix` keeps labs (and tests) apart.
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    pub backends: u8,
    /// Load-balancer nodes: 1, or 2 behind BGP and ECMP.
    pub lbs: u8,
}

impl Topology {
    pub fn new(prefix: &str, backends: u8) -> Result<Topology, LabError> {
        if !(1..=MAX_BACKENDS).contains(&backends) {
            return Err(LabError::Config(format!(
                "backends must be between 1 and {MAX_BACKENDS}, got {backends}"
            )));
        }
        if prefix.is_empty() || prefix.len() > 20 || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(LabError::Config(format!(
                "lab name {prefix:?} must be 1-20 letters, digits or '-'"
            )));
        }
        Ok(Topology { prefix: prefix.into(), backends, lbs: 1 })
    }

    /// A lab of `lbs` load-balancer nodes (1 or 2); two are announced by BGP.
    pub fn cluster(prefix: &str, backends: u8, lbs: u8) -> Result<Topology, LabError> {
        if !(1..=2).contains(&lbs) {
            return Err(LabError::Config(format!("load balancers must be 1 or 2, got {lbs}")));
        }
        Ok(Topology { lbs, ..Topology::new(prefix, backends)? })
    }

    /// The lab's load-balancer nodes, numbered from 1.
    pub fn nodes(&self) -> std::ops::RangeInclusive<u8> {
        1..=self.lbs
    }
    /// Node `n`'s namespace: `PREFIX-lb`, `PREFIX-lb2`.
    pub fn ns_node(&self, n: u8) -> String {
        Self::node_name(n).map_or_else(|| self.ns_lb(), |name| format!("{}-{name}", self.prefix))
    }
    /// Node `n`'s short name: None for the first (`lb`), `lb2` for the second.
    fn node_name(n: u8) -> Option<String> {
        (n > 1).then(|| format!("lb{n}"))
    }
    /// Node `n`'s name in logs, pid files and the router's link names: lb, lb2.
    pub fn node_label(n: u8) -> String {
        Self::node_name(n).unwrap_or_else(|| "lb".into())
    }
    /// Node `n`'s address: 198.18.n.2.
    pub fn node_addr(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, n, 2)
    }
    /// The router's address toward node `n`: 198.18.n.1.
    pub fn node_gateway(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, n, 1)
    }
    /// Node `n`'s address on the shared Layer 2 segment: 198.18.20.(n+1).
    pub fn node_l2_addr(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 20, 1 + n)
    }
    /// The router's interface toward node `n` (`lb`, `lb2`), and toward its L2 leg.
    pub fn router_node_links(n: u8) -> [String; 2] {
        let label = Self::node_label(n);
        [label.clone(), format!("{label}-l2")]
    }

    pub fn ns_client(&self) -> String {
        format!("{}-client", self.prefix)
    }
    pub fn ns_router(&self) -> String {
        format!("{}-router", self.prefix)
    }
    pub fn ns_lb(&self) -> String {
        format!("{}-lb", self.prefix)
    }
    pub fn ns_backend(&self, i: u8) -> String {
        format!("{}-be{i}", self.prefix)
    }
    /// Every namespace of this lab, client first.
    pub fn namespaces(&self) -> Vec<String> {
        let mut all = vec![self.ns_client(), self.ns_router()];
        all.extend(self.nodes().map(|n| self.ns_node(n)));
        all.extend((1..=self.backends).map(|i| self.ns_backend(i)));
        all
    }
    /// Where the lab keeps pid files and each backend's decap state.
    pub fn run_dir(&self) -> std::path::PathBuf {
        std::path::PathBuf::from("/run/tula-lab").join(&self.prefix)
    }

    /// Backend `i`'s own (routed) address: 198.18.(10+i).2.
    pub fn backend_addr(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 10 + i, 2)
    }
    /// Backend `i`'s own IPv6 address: 2001:db8:1i::2.
    pub fn backend_addr6(i: u8) -> Ipv6Addr {
        ipv6_of(Self::backend_addr(i))
    }
    /// The router's address on backend `i`'s subnet.
    pub fn backend_gateway(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 10 + i, 1)
    }
    /// Backend `i`'s address on the shared Layer 2 segment.
    pub fn backend_l2_addr(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 20, 10 + i)
    }
    /// The router's interface toward backend `i`.
    pub fn router_backend_link(i: u8) -> String {
        format!("be{i}")
    }
    /// The router's interface toward the load balancer.
    pub const ROUTER_LB_LINK: &'static str = "lb";

    /// True when any namespace of this lab exists.
    pub fn exists(&self) -> bool {
        let existing = net::netns_list().unwrap_or_default();
        self.namespaces().iter().any(|n| existing.contains(n))
    }

    /// Builds the namespaces, links, addresses and routes. On failure,
    /// everything made so far is removed again.
    pub fn build(&self) -> Result<(), LabError> {
        if self.exists() {
            return Err(LabError::Config(format!(
                "lab {:?} is already up; take it down first with `tula lab down --name {}`",
                self.prefix, self.prefix
            )));
        }
        let result = self.build_inner();
        if result.is_err() {
            let _ = self.remove();
        }
        result
    }

    fn build_inner(&self) -> Result<(), LabError> {
        let mut made = Vec::new();
        for name in self.namespaces() {
            made.push(Netns::create(&name)?);
        }
        let [client, router, rest @ ..] = made.as_slice() else { unreachable!() };
        let (lbs, backends) = rest.split_at(usize::from(self.lbs));

        // client <-> router
        client.run(|| -> Result<(), LabError> {
            net::add_veth("eth0", "client", Some(router))?;
            add_dual_stack("eth0", CLIENT_ADDR)?;
            net::set_up("eth0")?;
            // Partial checksums from a veth are never completed once XDP touched the frame.
            net::set_offload("eth0", Offload::TxChecksum, false)?;
            add_default_routes(CLIENT_GATEWAY)?;
            Ok(())
        })??;
        // each lb <-> router, and the lb's leg on the shared segment
        for (n, lb) in self.nodes().zip(lbs) {
            let [routed, l2] = Self::router_node_links(n);
            lb.run(|| -> Result<(), LabError> {
                net::add_veth("eth0", &routed, Some(router))?;
                add_dual_stack("eth0", Self::node_addr(n))?;
                net::set_up("eth0")?;
                net::add_veth("eth1", &l2, Some(router))?;
                add_dual_stack("eth1", Self::node_l2_addr(n))?;
                net::set_up("eth1")?;
                add_default_routes(Self::node_gateway(n))?;
                // The balancer's FIB lookups are forwarding lookups, in both families.
                net::sysctl::write("net.ipv4.ip_forward", "1")?;
                net::sysctl::write("net.ipv6.conf.all.forwarding", "1")?;
                Ok(())
            })??;
        }
        for (i, be) in (1..=self.backends).zip(backends) {
            be.run(|| -> Result<(), LabError> {
                net::add_veth("eth0", &Self::router_backend_link(i), Some(router))?;
                add_dual_stack("eth0", Self::backend_addr(i))?;
                net::set_up("eth0")?;
                net::add_veth("eth1", &format!("be{i}-l2"), Some(router))?;
                add_dual_stack("eth1", Self::backend_l2_addr(i))?;
                net::set_up("eth1")?;
                add_default_routes(Self::backend_gateway(i))?;
                // L2 DSR requests arrive on eth1 from a client routed via eth0.
                net::sysctl::write("net.ipv4.conf.eth1.rp_filter", "0")?;
                Ok(())
            })??;
        }
        router.run(|| -> Result<(), LabError> {
            net::sysctl::write("net.ipv4.ip_forward", "1")?;
            net::sysctl::write("net.ipv6.conf.all.forwarding", "1")?;
            // Replies from backends carry the VIP as source: no reverse-path check here.
            net::sysctl::write("net.ipv4.conf.all.rp_filter", "0")?;
            net::sysctl::write("net.ipv4.conf.default.rp_filter", "0")?;
            add_dual_stack("client", CLIENT_GATEWAY)?;
            net::set_up("client")?;
            for n in self.nodes() {
                let [routed, _] = Self::router_node_links(n);
                add_dual_stack(&routed, Self::node_gateway(n))?;
                net::set_up(&routed)?;
                // XDP_TX from the lb's eth0 lands here: a veth takes it only with GRO on.
                net::set_offload(&routed, Offload::Gro, true)?;
            }
            net::add_bridge("l2")?;
            net::set_up("l2")?;
            let node_legs = self.nodes().map(|n| Self::router_node_links(n)[1].clone());
            for port in node_legs.chain((1..=self.backends).map(|i| format!("be{i}-l2"))) {
                net::set_master(&port, "l2")?;
                net::set_offload(&port, Offload::Gro, true)?;
                net::set_up(&port)?;
            }
            for i in 1..=self.backends {
                let link = Self::router_backend_link(i);
                add_dual_stack(&link, Self::backend_gateway(i))?;
                net::set_up(&link)?;
                net::sysctl::write(&net::sysctl::conf_key(&link, "rp_filter"), "0")?;
            }
            if self.lbs == 1 {
                net::add_route(Ipv4Addr::new(203, 0, 113, 0), 24, Some(LB_ADDR), None)?;
                net::add_route(VIP6_NET, VIP6_PREFIX, Some(LB_ADDR6), None)?;
            } else {
                // The nodes' BGP routes (IPv4 and IPv6 sessions) become ECMP
                // routes; spread flows on the 5-tuple as a hardware router does (LAB-NOTES.md).
                for family in ["ipv4", "ipv6"] {
                    net::sysctl::write(&format!("net.{family}.fib_multipath_hash_policy"), "3")?;
                    net::sysctl::write(&format!("net.{family}.fib_multipath_hash_fields"), "0x37")?;
                }
            }
            Ok(())
        })??;
        for ns in made {
            ns.keep();
        }
        Ok(())
    }

    /// Removes every namespace of this lab (their links go with them).
    pub fn remove(&self) -> Result<(), LabError> {
        let existing = net::netns_list()?;
        for name in self.namespaces() {
            if existing.contains(&name) {
                Netns::open(&name)?.delete()?;
            }
        }
        Ok(())
    }
}
