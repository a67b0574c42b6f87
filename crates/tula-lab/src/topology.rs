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

use crate::LabError;
use std::net::Ipv4Addr;
use tula_net::{self as net, Netns, Offload};

/// The Layer 3 (IPIP) VIP.
pub const VIP_L3: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The Layer 2 VIP, served over the shared segment.
pub const VIP_L2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
pub const VIP_PORT: u16 = 80;
/// The UDP VIP: the Layer 3 VIP's address, this port.
pub const VIP_UDP_PORT: u16 = 5353;
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const LB_L2_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 2);
pub const MAX_BACKENDS: u8 = 9;

/// Names and addresses of one lab; `prefix` keeps labs (and tests) apart.
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    pub backends: u8,
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
        Ok(Topology { prefix: prefix.into(), backends })
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
        let mut all = vec![self.ns_client(), self.ns_router(), self.ns_lb()];
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
        let [client, router, lb, backends @ ..] = made.as_slice() else { unreachable!() };

        // client <-> router
        let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
        client.run(|| -> Result<(), LabError> {
            net::add_veth("eth0", "client", Some(router))?;
            net::add_address("eth0", CLIENT_ADDR.into(), 24)?;
            net::set_up("eth0")?;
            // Partial checksums from a veth are never completed once XDP touched the frame.
            net::set_offload("eth0", Offload::TxChecksum, false)?;
            net::add_route(Ipv4Addr::UNSPECIFIED, 0, Some(Ipv4Addr::new(198, 18, 0, 1)), None)?;
            Ok(())
        })??;
        // lb <-> router, and the lb's leg on the shared segment
        lb.run(|| -> Result<(), LabError> {
            net::add_veth("eth0", Self::ROUTER_LB_LINK, Some(router))?;
            net::add_address("eth0", LB_ADDR.into(), 24)?;
            net::set_up("eth0")?;
            net::add_veth("eth1", "lb-l2", Some(router))?;
            net::add_address("eth1", LB_L2_ADDR.into(), 24)?;
            net::set_up("eth1")?;
            net::add_route(Ipv4Addr::UNSPECIFIED, 0, Some(Ipv4Addr::new(198, 18, 1, 1)), None)?;
            net::sysctl::write("net.ipv4.ip_forward", "1")?;
            Ok(())
        })??;
        for (i, be) in (1..=self.backends).zip(backends) {
            be.run(|| -> Result<(), LabError> {
                net::add_veth("eth0", &Self::router_backend_link(i), Some(router))?;
                net::add_address("eth0", Self::backend_addr(i).into(), 24)?;
                net::set_up("eth0")?;
                net::add_veth("eth1", &format!("be{i}-l2"), Some(router))?;
                net::add_address("eth1", Self::backend_l2_addr(i).into(), 24)?;
                net::set_up("eth1")?;
                net::add_route(Ipv4Addr::UNSPECIFIED, 0, Some(Self::backend_gateway(i)), None)?;
                // L2 DSR requests arrive on eth1 from a client routed via eth0.
                net::sysctl::write("net.ipv4.conf.eth1.rp_filter", "0")?;
                Ok(())
            })??;
        }
        router.run(|| -> Result<(), LabError> {
            net::sysctl::write("net.ipv4.ip_forward", "1")?;
            // Replies from backends carry the VIP as source: no reverse-path check here.
            net::sysctl::write("net.ipv4.conf.all.rp_filter", "0")?;
            net::sysctl::write("net.ipv4.conf.default.rp_filter", "0")?;
            net::add_address("client", ip("198.18.0.1"), 24)?;
            net::set_up("client")?;
            net::add_address(Self::ROUTER_LB_LINK, ip("198.18.1.1"), 24)?;
            net::set_up(Self::ROUTER_LB_LINK)?;
            // XDP_TX from the lb's eth0 lands here: a veth takes it only with GRO on.
            net::set_offload(Self::ROUTER_LB_LINK, Offload::Gro, true)?;
            net::add_bridge("l2")?;
            net::set_up("l2")?;
            for port in std::iter::once("lb-l2".to_string()).chain((1..=self.backends).map(|i| format!("be{i}-l2"))) {
                net::set_master(&port, "l2")?;
                net::set_offload(&port, Offload::Gro, true)?;
                net::set_up(&port)?;
            }
            for i in 1..=self.backends {
                let link = Self::router_backend_link(i);
                net::add_address(&link, Self::backend_gateway(i).into(), 24)?;
                net::set_up(&link)?;
                net::sysctl::write(&net::sysctl::conf_key(&link, "rp_filter"), "0")?;
            }
            net::add_route(Ipv4Addr::new(203, 0, 113, 0), 24, Some(LB_ADDR), None)?;
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
