//! Shared fixtures for the packet tests: a private network namespace in which
//! bpf_fib_lookup gives known answers, a small balancer loaded in it, and
//! frames built with etherparse.
//!
//! Topology inside the namespace (one per test):
//!   lb0 (198.18.0.1/24, the ingress interface) <-veth-> nh0
//!   198.18.0.2   next-hop router, permanent neighbour NEXT_HOP_MAC
//!   198.18.0.10  on-link backend for L2 DSR, permanent neighbour L2_BACKEND_MAC
//!   198.18.0.20  on-link address with no neighbour entry
//!   198.18.100.0/24 via 198.18.0.2 (routed backends for L3 DSR)
//!   198.19.0.0/24 blackhole
//! and in IPv6 (frames6.rs):
//!   lb0 2001:db8::1/64; 2001:db8::2 the next hop (NEXT_HOP_MAC),
//!   2001:db8::10 the on-link L2 DSR backend (L2_BACKEND_MAC),
//!   2001:db8:100::/64 via 2001:db8::2 (routed IPv6 backends)

#![allow(dead_code)]

mod frames;
mod frames6;
pub mod fuzz;
pub mod timed;
pub use frames::*;
pub use frames6::*;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use tula_dataplane::{
    Backend, Counter, Counters, Dataplane, Dsr, LoadOptions, Protocol, Scheduler, VipKey, VipSpec,
    XdpAction,
};
use tula_net::Netns;

pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const L2_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const L2_BACKEND_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x10];
pub const UNRESOLVED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
pub const BLACKHOLED: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 5);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 7);
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xc1];
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Routed backend `n` (1..=250) in 198.18.100.0/24.
pub fn routed_backend(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 100, n)
}

/// Small map sizes, so parallel tests stay light.
pub fn small_options() -> LoadOptions {
    LoadOptions {
        max_vips: 8,
        max_backends: 64,
        // Fewer paths than backend ids, as in production: the two strides differ.
        max_backend_addresses: 60,
        ring_size: 251,
        conn_table_size: 4096,
        pin_dir: None,
    }
}

/// The namespace, the interface facts the tests need, and the balancer.
pub struct Fixture {
    pub ingress: u32,
    pub lb_mac: [u8; 6],
    pub dataplane: Dataplane,
}

/// Runs `test` on a thread inside a fresh namespace `tdp-<name>-<pid>` set up
/// as above, with a balancer loaded (small sizes) and registered on lb0. The
/// namespace is deleted afterwards, whatever happens.
pub fn in_lab<T: Send>(name: &str, test: impl FnOnce(&mut Fixture) -> T + Send) -> T {
    in_lab_with(name, &small_options(), test)
}

/// As `in_lab`, with the balancer loaded with `options`.
pub fn in_lab_with<T: Send>(
    name: &str,
    options: &LoadOptions,
    test: impl FnOnce(&mut Fixture) -> T + Send,
) -> T {
    let ns = Netns::create(&format!("tdp-{name}-{}", std::process::id()))
        .expect("creating the test namespace");
    let result = ns.run(|| {
        // A SYN waits in the SYN table of the CPU that ran it, for its
        // connection's next packet: as RSS keeps a flow on one CPU, so does a test.
        tula_dataplane::stay_on_this_cpu();
        build_topology();
        let mut dataplane = Dataplane::load(options).expect("loading the balancer");
        dataplane
            .set_interface("lb0", &Default::default())
            .expect("registering lb0");
        let lb0 = tula_net::link("lb0").unwrap();
        let mut fixture = Fixture {
            ingress: lb0.index,
            lb_mac: lb0.mac,
            dataplane,
        };
        test(&mut fixture)
    });
    result.expect("entering the test namespace")
}

/// Keeps the calling thread on CPU 0, for tests of per-CPU state (next-hop
/// cache, ICMP token bucket, round-robin cursors): a thread that moved would
/// see another CPU's.
pub fn stay_on_cpu0() {
    stay_on_cpu(0)
}

pub use tula_dataplane::stay_on_cpu;

/// Builds the topology above in the calling thread's namespace.
pub fn build_topology() {
    tula_net::add_veth("lb0", "nh0", None).unwrap();
    tula_net::set_up("lb0").unwrap();
    tula_net::set_up("nh0").unwrap();
    tula_net::add_address("lb0", LB_ADDR.into(), 24).unwrap();
    tula_net::add_neighbour("lb0", NEXT_HOP, NEXT_HOP_MAC).unwrap();
    tula_net::add_neighbour("lb0", L2_BACKEND, L2_BACKEND_MAC).unwrap();
    tula_net::add_route(Ipv4Addr::new(198, 18, 100, 0), 24, Some(NEXT_HOP), None).unwrap();
    // FIB lookups from XDP are forwarding lookups: forwarding must be on at ingress.
    tula_net::sysctl::write("net.ipv4.conf.lb0.forwarding", "1").unwrap();
    ip(&["route", "add", "blackhole", "198.19.0.0/24"]);
    // IPv6 (tula-net's neighbour and route helpers are IPv4 only): the same shape.
    tula_net::sysctl::write("net.ipv6.conf.all.forwarding", "1").unwrap();
    ip(&["-6", "addr", "add", "2001:db8::1/64", "dev", "lb0", "nodad"]);
    let mac = |m: [u8; 6]| m.map(|b| format!("{b:02x}")).join(":");
    for (addr, lladdr) in [(NEXT_HOP6, NEXT_HOP_MAC), (L2_BACKEND6, L2_BACKEND_MAC)] {
        let (addr, lladdr) = (addr.to_string(), mac(lladdr));
        ip(&[
            "-6",
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &lladdr,
            "nud",
            "permanent",
            "dev",
            "lb0",
        ]);
    }
    ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:100::/64",
        "via",
        "2001:db8::2",
        "dev",
        "lb0",
    ]);
}

/// Runs `ip` with `args` in the calling thread's namespace; panics on failure.
pub fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("running ip");
    assert!(status.success(), "ip {}", args.join(" "));
}

impl Fixture {
    /// One backend per id, all alive, and a VIP whose ring is `ring`.
    pub fn add_vip(&mut self, key: VipKey, dsr: Dsr, scheduler: Scheduler, ring: &[u32]) {
        self.dataplane
            .set_vip(
                &key,
                &VipSpec {
                    id: 1,
                    dsr,
                    scheduler,
                    icmp_echo: true,
                },
                ring,
            )
            .expect("setting the VIP");
    }

    pub fn add_backend(&mut self, id: u32, addr: impl Into<IpAddr>) {
        self.dataplane
            .set_backend(
                id,
                &Backend {
                    addr: addr.into(),
                    alive: true,
                },
            )
            .expect("setting a backend");
    }

    /// Fragmentation Needed on, with a rate limit no test reaches
    /// (a million a second, as many in a burst).
    pub fn lift_icmp_rate_limit(&mut self) {
        self.dataplane
            .set_icmp(&tula_dataplane::IcmpSettings {
                frag_needed: true,
                per_second: 1_000_000,
                burst: 1_000_000,
            })
            .unwrap();
    }

    /// A ring of the data plane's size that holds `id` in every slot.
    pub fn ring_of(&self, id: u32) -> Vec<u32> {
        vec![id; self.dataplane.ring_size() as usize]
    }
}

pub fn vip_key(port: u16, protocol: Protocol) -> VipKey {
    VipKey {
        addr: VIP.into(),
        port,
        protocol,
    }
}

pub fn vip6_key(port: u16, protocol: Protocol) -> VipKey {
    VipKey {
        addr: VIP6.into(),
        port,
        protocol,
    }
}

pub fn client(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(CLIENT, port)
}

/// Client number `i` of many (floods, new flows): numbers that differ give
/// 5-tuples that differ, from 198.19.0.0/16 and ports from 1024.
pub fn numbered_client(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(
        std::net::Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8),
        1024 + (i >> 16) as u16,
    )
}

pub fn vip(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(VIP, port)
}

pub const TCP: Protocol = Protocol::Tcp;
pub const UDP: Protocol = Protocol::Udp;

/// Runs `frame` through the balancer; its verdict, output and the counters that moved.
pub fn run(f: &Fixture, frame: &[u8]) -> (XdpAction, Vec<u8>, Counters) {
    let before = f.dataplane.counters().unwrap();
    let (action, out) = f.dataplane.test_run(frame, Some(f.ingress)).unwrap();
    (action, out, f.dataplane.counters().unwrap().since(&before))
}

/// Asserts that exactly the counters in `expected` moved, by the given amounts.
pub fn assert_counted(delta: &Counters, expected: &[(Counter, u64)]) {
    for (counter, value) in delta.iter() {
        let want = expected
            .iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |(_, v)| *v);
        assert_eq!(value, want, "counter {counter}; all that moved:\n{delta}");
    }
}

/// One row of a fixture table (tests/fixtures.rs, tests/ipv6.rs): a class of
/// frame, its verdict, what leaves and the counters that move.
pub struct Case {
    pub what: &'static str,
    pub frame: fn(&Fixture) -> Vec<u8>,
    pub verdict: XdpAction,
    /// What leaves, from the fixture and the frame; `None`: the frame unchanged.
    pub output: Option<fn(&Fixture, &[u8]) -> Vec<u8>>,
    /// Each moves by one; every other counter stays.
    pub counters: &'static [Counter],
}

/// Runs the rows through the balancer one after the other and checks each.
pub fn check_cases(f: &Fixture, cases: &[Case]) {
    for case in cases {
        let frame = (case.frame)(f);
        let (action, out, delta) = run(f, &frame);
        assert_eq!(action, case.verdict, "{}", case.what);
        let expected = case
            .output
            .map_or_else(|| frame.clone(), |output| output(f, &frame));
        assert_eq!(out, expected, "{}", case.what);
        let counted: Vec<_> = case.counters.iter().map(|c| (*c, 1)).collect();
        assert_counted(&delta, &counted);
    }
}
