//! The differential fuzzer: seeded random and mutated frames run through the
//! balancer (BPF_PROG_TEST_RUN) and through `tula_dataplane::model::Model`,
//! comparing verdict, output bytes and every counter frame by frame, and the
//! per-VIP and per-backend traffic at the end. Shared by `tests/fuzz.rs` (a
//! sample in CI) and `examples/fuzz.rs` (the long run).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tula_dataplane::abi::VipFilter;
use tula_dataplane::model::{Model, ModelBackend, ModelVip, Route};
use tula_dataplane::{
    Backend, Counter, Counters, Dsr, LoadOptions, Protocol, Scheduler, VipKey, VipSpec, XdpAction,
    EMPTY_SLOT,
};

use super::*;

/// Map sizes for the fuzz lab: a connection table far larger than the flows
/// the generator can make, so the kernel's LRU never evicts what the model keeps.
pub fn fuzz_options() -> LoadOptions {
    LoadOptions {
        conn_table_size: 262_144,
        ..small_options()
    }
}

/// splitmix64: small, seedable, and the same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

const VIP_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const NOT_A_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 12);
const INVALID_SOURCES: [Ipv4Addr; 5] = [
    Ipv4Addr::new(0, 0, 0, 0),
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(224, 0, 0, 5),
    Ipv4Addr::new(240, 0, 0, 1),
    Ipv4Addr::new(255, 255, 255, 255),
];
const PORTS: [u16; 6] = [80, 443, 22, 53, 5353, 9];

/// The fuzz lab's backends: (id, address, alive).
fn backends() -> Vec<(u32, Ipv4Addr, bool)> {
    let mut list: Vec<_> = (0..5)
        .map(|id| (id, routed_backend(id as u8 + 1), true))
        .collect();
    list.extend([
        (10, L2_BACKEND, true),
        (11, UNRESOLVED, true),
        (12, BLACKHOLED, true),
        (13, routed_backend(13), false),
        (14, UNRESOLVED, true),
    ]);
    list
}

/// The fuzz lab's VIPs: (key, id, DSR, scheduler, echo, backends cycled round the ring).
fn vips() -> Vec<(VipKey, u32, Dsr, Scheduler, bool, Vec<u32>)> {
    let key = |addr: Ipv4Addr, port, protocol| VipKey {
        addr: addr.into(),
        port,
        protocol,
    };
    vec![
        (
            key(VIP, 80, Protocol::Tcp),
            1,
            Dsr::L3Ipip,
            Scheduler::Maglev,
            true,
            vec![0, 1, 2, 3, 4],
        ),
        (
            key(VIP, 443, Protocol::Tcp),
            2,
            Dsr::L2,
            Scheduler::Maglev,
            true,
            vec![10, 11],
        ),
        (
            key(VIP, 0, Protocol::Udp),
            3,
            Dsr::L3Ipip,
            Scheduler::RoundRobin,
            true,
            vec![0, 1, 2, 12, 13],
        ),
        (
            key(VIP_B, 0, Protocol::Tcp),
            4,
            Dsr::L3Ipip,
            Scheduler::SourceHash,
            false,
            vec![14, 0, 3],
        ),
        (
            key(VIP_B, 53, Protocol::Udp),
            5,
            Dsr::L3Ipip,
            Scheduler::Maglev,
            false,
            vec![],
        ),
    ]
}

/// Programs the balancer in `f` and returns a model in the same state.
pub fn set_up(f: &mut Fixture) -> Model {
    let mut model = Model::new();
    for (id, addr, alive) in backends() {
        f.dataplane
            .set_backend(
                id,
                &Backend {
                    addr: addr.into(),
                    alive,
                },
            )
            .unwrap();
        model.set_backend(id, ModelBackend { addr, alive });
        let route = match addr {
            a if a == UNRESOLVED => Route::NoNeighbour {
                tunnel_src: LB_ADDR,
            },
            a if a == BLACKHOLED => Route::Unreachable,
            a => Route::Resolved {
                dmac: if a == L2_BACKEND {
                    L2_BACKEND_MAC
                } else {
                    NEXT_HOP_MAC
                },
                smac: f.lb_mac,
                tunnel_src: LB_ADDR,
                path_mtu: 1500,
                route_mtu: 1500,
                vlan_id: 0,
            },
        };
        model.set_route(addr, route);
    }
    let size = f.dataplane.ring_size() as usize;
    for (key, id, dsr, scheduler, icmp_echo, members) in vips() {
        let ring: Vec<u32> = if members.is_empty() {
            vec![EMPTY_SLOT; size]
        } else {
            (0..size)
                .map(|slot| members[slot % members.len()])
                .collect()
        };
        let spec = VipSpec {
            id,
            dsr,
            scheduler,
            icmp_echo,
        };
        f.dataplane.set_vip(&key, &spec, &ring).unwrap();
        let vip = ModelVip {
            id,
            dsr,
            scheduler,
            icmp_echo,
            ring,
        };
        let IpAddr::V4(addr) = key.addr else {
            unreachable!("the fuzz lab's VIPs are IPv4")
        };
        model.set_vip(addr, key.port, key.protocol, vip);
    }
    // The model has no clock.
    f.lift_icmp_rate_limit();
    model
}

/// The generator's address pools.
pub struct Addresses {
    /// An address that is no VIP but shares VIP's filter bit.
    filter_neighbour: Ipv4Addr,
}

impl Addresses {
    pub fn new() -> Addresses {
        let filter_neighbour = (0..=u16::MAX)
            .map(|n| Ipv4Addr::new(198, 18, (n >> 8) as u8, n as u8))
            .find(|a| VipFilter::bit(*a) == VipFilter::bit(VIP))
            .expect("an address sharing the VIP's filter bit");
        Addresses { filter_neighbour }
    }

    fn destination(&self, rng: &mut Rng) -> Ipv4Addr {
        match rng.below(20) {
            0..=8 => VIP,
            9..=13 => VIP_B,
            14..=15 => self.filter_neighbour,
            16..=17 => NOT_A_VIP,
            18 => Ipv4Addr::new(198, 18, 77, rng.below(4) as u8),
            _ => Ipv4Addr::from(rng.next() as u32),
        }
    }

    fn source(&self, rng: &mut Rng) -> Ipv4Addr {
        match rng.below(20) {
            0..=16 => Ipv4Addr::new(198, 18, 200, 1 + rng.below(8) as u8),
            17..=18 => rng.pick(&INVALID_SOURCES),
            _ => Ipv4Addr::from(rng.next() as u32),
        }
    }
}

/// An IPv4 header (20 bytes, right checksum) and `payload`.
#[allow(clippy::too_many_arguments)]
fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    frag_off: u16,
    tos: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut ip = vec![0x45, tos];
    ip.extend(((20 + payload.len()) as u16).to_be_bytes());
    ip.extend(id.to_be_bytes());
    ip.extend(frag_off.to_be_bytes());
    ip.extend([64, proto, 0, 0]);
    ip.extend(src.octets());
    ip.extend(dst.octets());
    let check = rfc1071(&ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    ip.extend_from_slice(payload);
    ip
}

fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = dst.to_vec();
    frame.extend(CLIENT_MAC);
    frame.extend(ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A payload length: mostly small, sometimes around the tunnel MTU.
fn payload_len(rng: &mut Rng, header: usize) -> usize {
    match rng.below(10) {
        0..=5 => rng.below(64),
        6..=7 => rng.below(600),
        _ => 1440 + rng.below(60) - header.min(40),
    }
}

fn tcp_header(rng: &mut Rng, sport: u16, dport: u16) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend(sport.to_be_bytes());
    tcp.extend(dport.to_be_bytes());
    tcp.extend(rng.bytes(8)); // sequence and acknowledgment numbers
    let any = rng.next() as u8;
    let flags = rng.pick(&[0x02u8, 0x10, 0x12, 0x18, 0x11, 0x04, 0x02, 0x10, any]);
    tcp.extend([0x50, flags, 0xfa, 0xf0]);
    tcp.extend(rng.bytes(4)); // checksum (never checked) and urgent pointer
    tcp
}

fn udp_header(rng: &mut Rng, sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend(sport.to_be_bytes());
    udp.extend(dport.to_be_bytes());
    udp.extend((len as u16).to_be_bytes());
    udp.extend(rng.bytes(2));
    udp
}

/// An IPv6 packet behind 0 to 5 extension headers (hop-by-hop, routing,
/// destination options, fragment: first or later), carrying TCP, UDP,
/// ICMPv6 or anything. Half go to the address whose four words xor to `vip`,
/// so they pass the VIP filter (the lab has no IPv6 VIP: the model knows
/// IPv6 up to the VIP lookup).
fn ipv6(rng: &mut Rng, vip: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let any = rng.next() as u8;
    let upper = rng.pick(&[6u8, 17, 58, 6, 17, 47, any]);
    let mut rest = match upper {
        6 => tcp_header(rng, sport, dport),
        17 => udp_header(rng, sport, dport, 8),
        58 => {
            let kind = rng.pick(&[128u8, 1, 2, 3, 4, 135]);
            let mut icmp = vec![kind, 0];
            icmp.extend(rng.bytes(6));
            icmp
        }
        _ => rng.bytes(8),
    };
    let n = rng.below(64);
    rest.extend(rng.bytes(n));
    let mut next = upper;
    for _ in 0..rng.below(6) {
        let kind = rng.pick(&[0u8, 43, 60, 44]);
        let mut header = if kind == 44 {
            let offset = if rng.chance(50) { 0u16 } else { 1448 };
            let more = u16::from(rng.chance(50));
            let mut fragment = vec![0, 0];
            fragment.extend((offset | more).to_be_bytes());
            fragment.extend((rng.below(4) as u32).to_be_bytes());
            fragment
        } else {
            let units = rng.below(3);
            let mut options = vec![0, units as u8];
            options.resize((units + 1) * 8, 0);
            options
        };
        header[0] = next;
        next = kind;
        header.extend(rest);
        rest = header;
    }
    let mut dst = [0u8; 16];
    if rng.chance(50) {
        dst[..4].copy_from_slice(&vip.octets());
    } else {
        dst.copy_from_slice(&rng.bytes(16));
    }
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend((rest.len() as u16).to_be_bytes());
    packet.extend([next, 64]);
    packet.extend([0x20, 0x01, 0x0d, 0xb8]);
    packet.extend(rng.bytes(12));
    packet.extend(dst);
    packet.extend(rest);
    packet
}

/// One frame: a valid packet of some kind, then perhaps mutated.
pub fn frame(rng: &mut Rng, lb_mac: [u8; 6], addrs: &Addresses) -> Vec<u8> {
    let src = addrs.source(rng);
    let dst = addrs.destination(rng);
    let sport = 1024 + rng.below(64) as u16;
    let dport = rng.pick(&PORTS);
    let df = if rng.chance(70) { 0x4000 } else { 0 };
    let tos = if rng.chance(20) { rng.next() as u8 } else { 0 };
    let id = rng.below(16) as u16;
    let ip = match rng.below(16) {
        0..=3 => {
            let mut tcp = tcp_header(rng, sport, dport);
            let n = payload_len(rng, 40);
            tcp.extend(rng.bytes(n));
            ipv4(src, dst, 6, id, df, tos, &tcp)
        }
        4..=6 => {
            let n = payload_len(rng, 28);
            let mut udp = udp_header(rng, sport, dport, 8 + n);
            udp.extend(rng.bytes(n));
            ipv4(src, dst, 17, id, df, tos, &udp)
        }
        7 => {
            // An echo request: code 0 mostly.
            let code = if rng.chance(90) { 0 } else { 1 };
            let mut icmp = vec![8, code, 0, 0];
            let n = 4 + rng.below(64);
            icmp.extend(rng.bytes(n));
            let check = rfc1071(&icmp);
            icmp[2..4].copy_from_slice(&check.to_be_bytes());
            ipv4(src, dst, 1, id, df, tos, &icmp)
        }
        8..=9 => {
            // An ICMP error quoting a packet from a VIP (or not) to a client.
            let kind = rng.pick(&[3u8, 3, 3, 11, 5, 12]);
            let quoted_src = if rng.chance(80) {
                dst
            } else {
                addrs.destination(rng)
            };
            let quoted_proto = rng.pick(&[6u8, 17, 6, 17, 1]);
            let quoted_off = if rng.chance(10) { 0x0010 } else { 0x4000 };
            let mut ports = Vec::new();
            ports.extend(rng.pick(&PORTS).to_be_bytes());
            ports.extend(sport.to_be_bytes());
            ports.extend(rng.bytes(4));
            let quoted = ipv4(quoted_src, src, quoted_proto, 0x77, quoted_off, 0, &ports);
            let mut icmp = vec![kind, rng.below(16) as u8, 0, 0, 0, 0];
            icmp.extend(1400u16.to_be_bytes());
            icmp.extend(quoted);
            if rng.chance(20) {
                let n = 1400 + rng.below(100);
                icmp.resize(n, 0x5a);
            }
            let check = rfc1071(&icmp);
            icmp[2..4].copy_from_slice(&check.to_be_bytes());
            ipv4(src, dst, 1, id, df, tos, &icmp)
        }
        10..=11 => {
            // A fragment: the first (with the L4 header) or a later one.
            let proto = rng.pick(&[6u8, 17]);
            let more = if rng.chance(60) { 0x2000 } else { 0 };
            let df = if rng.chance(10) { 0x4000 } else { 0 };
            let n = payload_len(rng, 40);
            if rng.chance(40) {
                let mut l4 = if proto == 6 {
                    tcp_header(rng, sport, dport)
                } else {
                    udp_header(rng, sport, dport, 3000)
                };
                l4.extend(rng.bytes(n));
                ipv4(src, dst, proto, id, 0x2000 | df, tos, &l4)
            } else {
                let offset = 1 + rng.below(300) as u16;
                ipv4(src, dst, proto, id, offset | more | df, tos, &rng.bytes(n))
            }
        }
        12 => {
            // IPv4 that is no TCP, UDP or ICMP: GRE, IPIP, anything.
            let any = rng.next() as u8;
            let proto = rng.pick(&[47u8, 4, 41, any]);
            let n = rng.below(100);
            ipv4(src, dst, proto, id, df, tos, &rng.bytes(n))
        }
        13 => {
            let any = rng.next() as u16;
            let ethertype = rng.pick(&[0x0806u16, 0x86dd, 0x88cc, any]);
            let n = rng.below(100);
            let payload = if ethertype == 0x86dd && rng.chance(80) {
                ipv6(rng, dst, sport, dport)
            } else {
                rng.bytes(n)
            };
            return mutate(rng, ethernet(lb_mac, ethertype, &payload));
        }
        _ => {
            // Random bytes, as IPv4 half the time.
            let n = 14 + rng.below(120);
            let mut frame = rng.bytes(n);
            if rng.chance(50) {
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
            }
            return frame;
        }
    };
    mutate(rng, ethernet(lb_mac, 0x0800, &ip))
}

/// Mutations of a frame (IPv4 at 14): each applied now and then.
fn mutate(rng: &mut Rng, mut frame: Vec<u8>) -> Vec<u8> {
    let l3 = 14;
    let has_ip = frame.len() >= l3 + 20 && frame[12..14] == [0x08, 0x00];
    if has_ip && rng.chance(4) {
        // IHL anything.
        frame[l3] = (frame[l3] & 0xf0) | rng.below(16) as u8;
    }
    if has_ip && rng.chance(2) {
        frame[l3] = (rng.below(16) as u8) << 4 | (frame[l3] & 0x0f);
    }
    if has_ip && rng.chance(6) {
        let tot_len = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]);
        let new = match rng.below(4) {
            0 => rng.next() as u16,
            1 => tot_len.wrapping_add(1 + rng.below(3) as u16),
            2 => tot_len.wrapping_sub(1 + rng.below(3) as u16),
            _ => rng.below(20) as u16,
        };
        frame[l3 + 2..l3 + 4].copy_from_slice(&new.to_be_bytes());
    }
    if has_ip && rng.chance(3) {
        frame[l3 + 8] = rng.below(2) as u8; // TTL 0 or 1: not ours to judge
    }
    if has_ip && rng.chance(3) {
        frame[l3 + 10] ^= 0x5a; // a bad header checksum: not checked either
    }
    if rng.chance(3) {
        let group = rng.pick(&[
            [0xff; 6],
            [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01],
            [0x33, 0x33, 0, 0, 0, 1],
        ]);
        frame[0..6].copy_from_slice(&group);
    }
    if rng.chance(5) {
        // A trailer: Ethernet padding, or junk.
        let n = 1 + rng.below(64);
        let junk = if rng.chance(50) {
            vec![0; n]
        } else {
            rng.bytes(n)
        };
        frame.extend(junk);
    }
    if rng.chance(5) {
        let tci = (rng.next() as u16).to_be_bytes();
        frame.splice(12..12, [0x81, 0x00, tci[0], tci[1]]);
    }
    if rng.chance(5) {
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(frame.len());
            frame[at] ^= 1 << rng.below(8);
        }
    }
    if rng.chance(6) {
        // Truncation: every length gets its turn over a long run.
        let len = 14 + rng.below(frame.len() - 13);
        frame.truncate(len);
    }
    frame
}

/// One frame where the balancer and the model disagree.
pub struct Mismatch {
    pub index: u64,
    pub frame: Vec<u8>,
    pub expected: String,
    pub got: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "mismatch at frame {}:", self.index)?;
        writeln!(f, "  frame    {}", hex(&self.frame))?;
        writeln!(f, "  expected {}", self.expected)?;
        write!(f, "  got      {}", self.got)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// The totals of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub frames: u64,
    pub mismatches: u64,
    pub aborted: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Frames by verdict, and by the reason counters they moved.
    pub verdicts: BTreeMap<String, u64>,
}

impl Report {
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The expected and actual result of one frame, as text, if they differ.
fn compare(
    expected: &tula_dataplane::model::Outcome,
    action: XdpAction,
    out: &[u8],
    delta: &Counters,
) -> Option<(String, String)> {
    let mut want = BTreeMap::new();
    for counter in &expected.counters {
        *want.entry(*counter).or_insert(0u64) += 1;
    }
    let got: BTreeMap<Counter, u64> = delta.iter().filter(|(_, v)| *v != 0).collect();
    if expected.action == action && expected.frame == out && want == got {
        return None;
    }
    let names = |m: &BTreeMap<Counter, u64>| {
        m.iter()
            .map(|(c, v)| {
                if *v == 1 {
                    c.to_string()
                } else {
                    format!("{c}x{v}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    Some((
        format!(
            "{:?} [{}] {}",
            expected.action,
            names(&want),
            hex(&expected.frame)
        ),
        format!("{action:?} [{}] {}", names(&got), hex(out)),
    ))
}

/// Runs `frames` frames from `seed` through the balancer in `f` (set up by
/// `set_up`, on CPU 0) and through `model`; calls `on_mismatch` for each
/// difference, then compares the per-VIP and per-backend traffic.
pub fn run(
    f: &Fixture,
    model: &mut Model,
    frames: u64,
    seed: u64,
    mut on_mismatch: impl FnMut(&Mismatch),
) -> Report {
    let addrs = Addresses::new();
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    let mut counters = f.dataplane.counters().unwrap();
    let start = Instant::now();
    for index in 0..frames {
        let frame = frame(&mut rng, f.lb_mac, &addrs);
        report.frames += 1;
        let (action, out) = match f.dataplane.test_run(&frame, Some(f.ingress)) {
            Ok(result) => result,
            Err(e) => {
                report.errors += 1;
                on_mismatch(&Mismatch {
                    index,
                    frame: frame.clone(),
                    expected: "a test run".into(),
                    got: format!("error: {e}"),
                });
                continue;
            }
        };
        let now = f.dataplane.counters().unwrap();
        let delta = now.since(&counters);
        counters = now;
        if action == XdpAction::Aborted {
            report.aborted += 1;
        }
        let expected = model.decide(&frame);
        *report.verdicts.entry(format!("{action:?}")).or_default() += 1;
        if let Some((expected, got)) = compare(&expected, action, &out, &delta) {
            report.mismatches += 1;
            on_mismatch(&Mismatch {
                index,
                frame,
                expected,
                got,
            });
        }
    }
    report.elapsed = start.elapsed();
    for (_, id, ..) in vips() {
        let t = f.dataplane.vip_traffic(id).unwrap();
        let want = model.vip_traffic.get(&id).copied().unwrap_or_default();
        if (t.packets, t.bytes) != want {
            report.mismatches += 1;
            on_mismatch(&Mismatch {
                index: frames,
                frame: Vec::new(),
                expected: format!("VIP {id} traffic (packets, bytes) {want:?}"),
                got: format!("{:?}", (t.packets, t.bytes)),
            });
        }
    }
    for (id, ..) in backends() {
        let t = f.dataplane.backend_traffic(id).unwrap();
        let want = model.backend_traffic.get(&id).copied().unwrap_or_default();
        if (t.packets, t.bytes) != want {
            report.mismatches += 1;
            on_mismatch(&Mismatch {
                index: frames,
                frame: Vec::new(),
                expected: format!("backend {id} traffic (packets, bytes) {want:?}"),
                got: format!("{:?}", (t.packets, t.bytes)),
            });
        }
    }
    report
}

/// Runs one frame on a freshly set-up balancer and model: how a mismatch is replayed.
pub fn replay(f: &Fixture, model: &mut Model, frame: &[u8]) -> Option<Mismatch> {
    let (action, out) = f.dataplane.test_run(frame, Some(f.ingress)).ok()?;
    let before = Counters::default();
    let delta = f.dataplane.counters().unwrap().since(&before);
    let expected = model.decide(frame);
    compare(&expected, action, &out, &delta).map(|(expected, got)| Mismatch {
        index: 0,
        frame: frame.to_vec(),
        expected,
        got,
    })
}
