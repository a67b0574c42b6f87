//! The benchmark's network: two namespaces made for one run and a veth pair
//! between them.
//!
//! ```text
//!  gen ns                                   lb ns
//!  gen0 198.18.0.2  <------- veth ------->  lb0 198.18.0.1
//!  test-run generator sends out of gen0      balancer (or the floor) on lb0,
//!  bench_sink on gen0 counts what comes      XDP_TX back out of lb0
//!  back, and drops it
//! ```
//!
//! The balancer is one-armed, as most deployments are: every backend is
//! reached back through lb0, so it answers XDP_TX exactly like the floor
//! program (swap MACs, XDP_TX) and both take the same path. L3 backends
//! (198.18.64.0/18) are routed via gen0's address, L2 backends
//! (198.18.0.100 ...) are on lb0's subnet; all of them have permanent
//! neighbour entries, so whatever the balancer sends lands on gen0's sink.

use std::net::{IpAddr, Ipv4Addr};

use tula_net::{self as net, Link, Netns};

pub const LB_IF: &str = "lb0";
pub const GEN_IF: &str = "gen0";
pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const GEN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// L3 backends live here, routed via [`GEN_ADDR`].
pub const BACKEND_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 64, 0);
pub const BACKEND_PREFIX: u8 = 18;

/// L3 backend `i` (0-based, below 16,000): 198.18.64.1 onwards.
pub fn l3_backend(i: u32) -> Ipv4Addr {
    let n = u32::from(BACKEND_NET) + 1 + i;
    Ipv4Addr::from(n)
}

/// L2 backend `i` (0-based, below 100): 198.18.0.100 onwards, on lb0's subnet.
pub fn l2_backend(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 100 + i as u8)
}

/// The (made-up) MAC address of L2 backend `i`.
pub fn l2_backend_mac(i: u32) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x01, i as u8]
}

/// The two namespaces and what the run needs to know about their interfaces.
/// Dropping it deletes both namespaces, the veth pair with them.
pub struct BenchNet {
    pub gen: Netns,
    pub lb: Netns,
    pub gen_link: Link,
    pub lb_link: Link,
}

impl BenchNet {
    /// Makes `{prefix}-gen` and `{prefix}-lb` with the veth pair, addresses,
    /// the route to the L3 backends and neighbours for `l2_backends`.
    pub fn create(prefix: &str, l2_backends: u32) -> BenchNet {
        let gen = Netns::create(&format!("{prefix}-gen"))
            .unwrap_or_else(|e| panic!("creating namespace {prefix}-gen (root needed): {e}"));
        let lb = Netns::create(&format!("{prefix}-lb"))
            .unwrap_or_else(|e| panic!("creating namespace {prefix}-lb: {e}"));
        let gen_link = {
            let lb_ns = &lb;
            let gen_ns = &gen;
            lb_ns
                .run(|| {
                    add_multiqueue_veth(gen_ns)?;
                    net::add_address(LB_IF, IpAddr::V4(LB_ADDR), 24)?;
                    net::set_up(LB_IF)
                })
                .and_then(|r| r)
                .unwrap_or_else(|e| panic!("setting up {LB_IF} in {}: {e}", lb_ns.name()));
            // No IPv6 chatter (router solicitations, neighbour discovery) among the counted frames.
            for ns in [gen_ns, lb_ns] {
                ns.run(|| net::sysctl::write("net.ipv6.conf.all.disable_ipv6", "1"))
                    .and_then(|r| r)
                    .unwrap_or_else(|e| panic!("turning IPv6 off in {}: {e}", ns.name()));
            }
            gen_ns
                .run(|| {
                    net::add_address(GEN_IF, IpAddr::V4(GEN_ADDR), 24)?;
                    net::set_up(GEN_IF)?;
                    net::link(GEN_IF)
                })
                .and_then(|r| r)
                .unwrap_or_else(|e| panic!("setting up {GEN_IF} in {}: {e}", gen_ns.name()))
        };
        let lb_link = lb
            .run(|| -> Result<Link, net::NetError> {
                net::add_neighbour(LB_IF, GEN_ADDR, gen_link.mac)?;
                net::add_route(BACKEND_NET, BACKEND_PREFIX, Some(GEN_ADDR), Some(LB_IF))?;
                for i in 0..l2_backends {
                    net::add_neighbour(LB_IF, l2_backend(i), l2_backend_mac(i))?;
                }
                net::link(LB_IF)
            })
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("routes and neighbours in {}: {e}", lb.name()));
        BenchNet {
            gen,
            lb,
            gen_link,
            lb_link,
        }
    }
}

/// Queues of each end of the veth pair: one per CPU a multi-CPU run uses, so
/// that frames sent on different CPUs are received (and balanced) on their own
/// CPU instead of funnelling through one queue.
const VETH_QUEUES: &str = "2";

/// lb0 and gen0 (moved into `gen_ns`) with VETH_QUEUES queues each way.
/// Called on a thread in the lb namespace; `ip` inherits it. (Our netlink
/// helper makes single-queue pairs.)
fn add_multiqueue_veth(gen_ns: &Netns) -> Result<(), net::NetError> {
    let queues = ["numtxqueues", VETH_QUEUES, "numrxqueues", VETH_QUEUES];
    let mut args = vec!["link", "add", LB_IF];
    args.extend(queues);
    args.extend(["type", "veth", "peer", "name", GEN_IF]);
    args.extend(queues);
    let status = std::process::Command::new("ip")
        .args(&args)
        .status()
        .unwrap_or_else(|e| panic!("running ip {}: {e}", args.join(" ")));
    assert!(status.success(), "ip {}: {status}", args.join(" "));
    net::move_link(GEN_IF, gen_ns)
}
