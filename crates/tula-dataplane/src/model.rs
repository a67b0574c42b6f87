//! A reference model of the balancer's per-packet decision, written from
//! docs/DATAPLANE.md: for one frame and the model's state (VIPs, rings,
//! backends, next hops, connection and fragment tables, round-robin cursors,
//! outer IP IDs), the verdict, the exact bytes that leave and every counter
//! that moves. The differential fuzzer (`tests/fuzz.rs`, `examples/fuzz.rs`)
//! runs random and mutated frames through the real program and this model
//! and reports every difference.
//!
//! It lives in tula-dataplane, next to what it mirrors (the flow hash, the
//! ring index, the VIP filter, the counters), so that a change to the packet
//! path and to its specification are made and reviewed together. It models
//! one CPU (the fuzzer pins itself to CPU 0, so one SYN table), no LRU
//! eviction (the fuzzer keeps its flows far below the tables' sizes), no
//! SYN older than SYN_LIFE (a run lasts seconds) and no ICMP rate limit (the
//! fuzzer sets one that never binds). IPv6 frames are modelled up to the VIP
//! lookup (parsing, extension headers, lengths, the VIP filter, fragments):
//! the model has no IPv6 VIPs, so every IPv6 frame is passed, for one reason
//! or another.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::abi::VipFilter;
use crate::{
    flow_hash, ring_index, source_hash, Counter, Dsr, Flow, Protocol, Scheduler, XdpAction,
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ICMP6: u8 = 58;
const ETH_P_8021Q: u16 = 0x8100;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;
const IPIP_HLEN: usize = 20;

/// What the FIB and the egress interface say about a backend's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A resolved next hop: the frame leaves by the ingress interface (`tx`).
    Resolved {
        dmac: [u8; 6],
        smac: [u8; 6],
        tunnel_src: Ipv4Addr,
        /// The route MTU, or the interface's lower path MTU.
        path_mtu: u16,
        route_mtu: u16,
        vlan_id: u16,
    },
    /// A route, but no neighbour entry: L3 goes to the kernel encapsulated.
    NoNeighbour { tunnel_src: Ipv4Addr },
    /// No route, blackhole, unreachable.
    Unreachable,
}

/// One VIP as the model knows it.
#[derive(Clone, Debug)]
pub struct ModelVip {
    pub id: u32,
    pub dsr: Dsr,
    pub scheduler: Scheduler,
    pub icmp_echo: bool,
    /// `ring_size` backend ids (`u32::MAX` = empty slot).
    pub ring: Vec<u32>,
}

/// A backend as the model knows it.
#[derive(Clone, Copy, Debug)]
pub struct ModelBackend {
    pub addr: Ipv4Addr,
    pub alive: bool,
}

/// The model's answer for one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub action: XdpAction,
    pub frame: Vec<u8>,
    /// Every counter that moves, by one each (a counter may appear once at most).
    pub counters: Vec<Counter>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
}

impl FlowKey {
    /// The flow as the crate's hash takes it (an ICMP error's quoted flow is TCP or UDP).
    fn as_flow(&self) -> Flow {
        Flow {
            client: SocketAddrV4::new(self.src, self.sport),
            vip: SocketAddrV4::new(self.dst, self.dport),
            protocol: if self.proto == TCP {
                Protocol::Tcp
            } else {
                Protocol::Udp
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    proto: u8,
}

#[derive(Clone, Copy, Debug)]
struct Chosen {
    backend: u32,
    vip: u32,
    l2_dsr: bool,
}

/// The balancer's state and rules, on one CPU.
#[derive(Debug, Default)]
pub struct Model {
    vips: HashMap<(Ipv4Addr, u16, u8), ModelVip>,
    backends: HashMap<u32, ModelBackend>,
    routes: HashMap<Ipv4Addr, Route>,
    conns: HashMap<FlowKey, (u32, u32)>,
    /// The SYN table: slot -> the SYN's flow and backend.
    syns: HashMap<u32, (FlowKey, u32)>,
    frags: HashMap<FragKey, Chosen>,
    rr_cursors: HashMap<u32, u32>,
    ip_ids: HashMap<u32, u16>,
    frag_needed: bool,
    /// Bytes (frame length at ingress) and packets per VIP id and per backend id.
    pub vip_traffic: HashMap<u32, (u64, u64)>,
    pub backend_traffic: HashMap<u32, (u64, u64)>,
}

/// Big-endian u16 at `at`.
fn be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

fn addr_at(frame: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3])
}

/// The RFC 1071 checksum of `bytes` (odd length padded with zero).
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|pair| u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// RFC 1624 eqn. 3: checksum `check` after one 16-bit word changes from `old` to `new`.
fn checksum_replace(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = u64::from(!check) + u64::from(!old) + u64::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether a frame may draw ICMP from the balancer (RFC 1122 3.2.2, 3.2.1.3;
/// RFC 1812 4.3.2.7): not to an L2 group address, nor from a source that is
/// no single host.
fn may_answer(frame: &[u8], saddr: Ipv4Addr) -> bool {
    let first = saddr.octets()[0];
    frame[0] & 1 == 0 && first != 0 && first != 127 && first < 224
}

impl Model {
    /// An empty model; Fragmentation Needed answered (the default).
    pub fn new() -> Model {
        Model {
            frag_needed: true,
            ..Model::default()
        }
    }

    /// Sets or replaces a VIP; its round-robin cursor starts again at 0.
    pub fn set_vip(&mut self, addr: Ipv4Addr, port: u16, protocol: Protocol, vip: ModelVip) {
        self.rr_cursors.insert(vip.id, 0);
        self.vips
            .insert((addr, port, protocol_number(protocol)), vip);
    }

    pub fn set_backend(&mut self, id: u32, backend: ModelBackend) {
        self.backends.insert(id, backend);
    }

    /// What the next-hop lookup answers for `addr`.
    pub fn set_route(&mut self, addr: Ipv4Addr, route: Route) {
        self.routes.insert(addr, route);
    }

    pub fn set_frag_needed(&mut self, on: bool) {
        self.frag_needed = on;
    }

    fn filter_has(&self, addr: Ipv4Addr) -> bool {
        let bit = VipFilter::bit(addr);
        self.vips.keys().any(|(a, _, _)| VipFilter::bit(*a) == bit)
    }

    /// Why an IPv6 packet `ip` (to no IPv6 VIP: the model has none) is passed.
    fn ipv6_reason(&self, ip: &[u8]) -> Counter {
        const HOP: u8 = 0;
        const ROUTING: u8 = 43;
        const FRAGMENT: u8 = 44;
        const DEST: u8 = 60;
        const EXT_MAX: usize = 4;
        if ip.len() < 40 || ip[0] >> 4 != 6 {
            return Counter::Malformed;
        }
        let (mut next, mut at) = (ip[6], 40);
        let mut later_fragment = false;
        for _ in 0..EXT_MAX {
            match next {
                HOP | ROUTING | DEST => {
                    if ip.len() < at + 2 {
                        return Counter::Malformed;
                    }
                    next = ip[at];
                    at += (usize::from(ip[at + 1]) + 1) * 8;
                }
                FRAGMENT => {
                    if ip.len() < at + 8 {
                        return Counter::Malformed;
                    }
                    later_fragment = be16(ip, at + 2) & 0xfff8 != 0;
                    next = ip[at];
                    at += 8;
                    if later_fragment {
                        break;
                    }
                }
                _ => break,
            }
        }
        if !later_fragment && matches!(next, HOP | ROUTING | DEST | FRAGMENT) {
            return Counter::Malformed;
        }
        let ip_len = 40 + usize::from(be16(ip, 4));
        if at > ip_len || ip_len > ip.len() {
            return Counter::Malformed;
        }
        if next != TCP && next != UDP && next != ICMP6 {
            return Counter::NotVip;
        }
        let word = |i: usize| u32::from_ne_bytes([ip[i], ip[i + 1], ip[i + 2], ip[i + 3]]);
        let folded = word(24) ^ word(28) ^ word(32) ^ word(36);
        if !self.filter_has(Ipv4Addr::from(folded.to_ne_bytes())) {
            return Counter::NotVip;
        }
        if next == ICMP6 {
            if ip.len() < at + 8 || at + 8 > ip_len {
                return Counter::Malformed;
            }
            return Counter::NotVip;
        }
        if later_fragment {
            return Counter::FragPassed;
        }
        let l4_len = if next == TCP { 20 } else { 8 };
        if ip.len() < at + l4_len || at + l4_len > ip_len {
            return Counter::Malformed;
        }
        Counter::NotVip
    }

    fn all_ports_vip(&self, addr: Ipv4Addr, proto: u8) -> bool {
        (proto == TCP || proto == UDP)
            && self.filter_has(addr)
            && self.vips.contains_key(&(addr, 0, proto))
    }

    fn answers_echo(&self, addr: Ipv4Addr) -> bool {
        self.vips
            .iter()
            .any(|((a, _, _), vip)| *a == addr && vip.icmp_echo)
    }

    fn backend_alive(&self, id: u32) -> Option<ModelBackend> {
        self.backends.get(&id).copied().filter(|b| b.alive)
    }

    /// The verdict, output and counters for `frame` (at least 14 bytes), and
    /// the state changes the balancer would make.
    pub fn decide(&mut self, frame: &[u8]) -> Outcome {
        let mut counters = Vec::new();
        let (action, out) = self.decide_into(frame, &mut counters);
        let out = out.unwrap_or_else(|| frame.to_vec());
        Outcome {
            action,
            frame: out,
            counters,
        }
    }

    fn decide_into(&mut self, frame: &[u8], counters: &mut Vec<Counter>) -> Step {
        let pass = |counters: &mut Vec<Counter>, reason: Counter| {
            counters.extend([reason, Counter::Pass]);
            (XdpAction::Pass, None)
        };
        let drop = |counters: &mut Vec<Counter>, reason: Counter| {
            counters.extend([reason, Counter::Drop]);
            (XdpAction::Drop, None)
        };
        let len = frame.len();
        let bytes = len as u64;

        // Ethernet and at most one 802.1Q tag.
        if len < ETH_HLEN {
            return pass(counters, Counter::NotIpv4);
        }
        let (mut ethertype, mut l2) = (be16(frame, 12), ETH_HLEN);
        let tagged = ethertype == ETH_P_8021Q;
        if tagged {
            if len < ETH_HLEN + 4 {
                return pass(counters, Counter::NotIpv4);
            }
            ethertype = be16(frame, 16);
            l2 += 4;
        }
        if ethertype == ETH_P_IPV6 {
            return pass(counters, self.ipv6_reason(&frame[l2..]));
        }
        if ethertype != ETH_P_IP {
            return pass(counters, Counter::NotIpv4);
        }

        // IPv4: the header whole, then IHL * 4 <= tot_len <= the bytes present.
        if len < l2 + 20 {
            return pass(counters, Counter::Malformed);
        }
        let (version, ihl) = (frame[l2] >> 4, usize::from(frame[l2] & 0x0f) * 4);
        if version != 4 || ihl < 20 || len < l2 + ihl {
            return pass(counters, Counter::Malformed);
        }
        let tot_len = usize::from(be16(frame, l2 + 2));
        let proto = frame[l2 + 9];
        let saddr = addr_at(frame, l2 + 12);
        let daddr = addr_at(frame, l2 + 16);
        let frag_off = be16(frame, l2 + 6);
        if tot_len < ihl || tot_len > len - l2 {
            let reason = Counter::Malformed;
            return if self.all_ports_vip(daddr, proto) {
                drop(counters, reason)
            } else {
                pass(counters, reason)
            };
        }
        if proto != TCP && proto != UDP && proto != ICMP {
            return pass(counters, Counter::NotVip);
        }
        if !self.filter_has(daddr) {
            return pass(counters, Counter::NotVip);
        }
        let is_fragment = frag_off & (IP_MF | IP_OFFSET) != 0;
        let later_fragment = frag_off & IP_OFFSET != 0;

        let mut icmp_error = false;
        let mut opens = false;
        let flow: FlowKey;
        let mut first_fragment = false;

        if proto == ICMP {
            let icmp = l2 + ihl;
            if len < icmp + 8 || ihl + 8 > tot_len {
                return pass(counters, Counter::Malformed);
            }
            if is_fragment {
                return pass(counters, Counter::NotVip);
            }
            let (kind, code) = (frame[icmp], frame[icmp + 1]);
            if kind == 8 {
                if !self.answers_echo(daddr) || code != 0 || ihl != 20 {
                    return pass(counters, Counter::NotVip);
                }
                if !may_answer(frame, saddr) {
                    return drop(counters, Counter::IcmpForbidden);
                }
                counters.extend([Counter::IcmpEcho, Counter::Tx]);
                return (XdpAction::Tx, Some(echo_reply(frame, l2)));
            }
            if kind != 3 && kind != 11 {
                return pass(counters, Counter::NotVip);
            }
            match quoted_flow(frame, icmp + 8, tot_len - ihl - 8, daddr) {
                Some(quoted) => flow = quoted,
                None => return pass(counters, Counter::NotVip),
            }
            icmp_error = true;
        } else {
            if later_fragment {
                let key = FragKey {
                    src: saddr,
                    dst: daddr,
                    id: be16(frame, l2 + 4),
                    proto,
                };
                let Some(dest) = self.frags.get(&key).copied() else {
                    return if self.all_ports_vip(daddr, proto) {
                        drop(counters, Counter::FragOrphan)
                    } else {
                        pass(counters, Counter::FragPassed)
                    };
                };
                if self.backend_alive(dest.backend).is_none() {
                    return drop(counters, Counter::NoBackend);
                }
                add(&mut self.vip_traffic, dest.vip, bytes);
                counters.push(Counter::Fragment);
                return self.forward(frame, l2, tagged, tot_len, dest, false, counters);
            }
            first_fragment = is_fragment;
            let l4 = l2 + ihl;
            let need = if proto == TCP { 20 } else { 8 };
            if len < l4 + need || ihl + need > tot_len {
                let reason = Counter::Malformed;
                return if self.all_ports_vip(daddr, proto) {
                    drop(counters, reason)
                } else {
                    pass(counters, reason)
                };
            }
            if proto == TCP {
                opens = frame[l4 + 13] & 0x12 == 0x02;
            }
            flow = FlowKey {
                src: saddr,
                dst: daddr,
                sport: be16(frame, l4),
                dport: be16(frame, l4 + 2),
                proto,
            };
        }

        // The VIP: exact port, else the all-ports entry.
        let vip = match self
            .vips
            .get(&(daddr, flow.dport, flow.proto))
            .or_else(|| self.vips.get(&(daddr, 0, flow.proto)))
        {
            Some(vip) => vip.clone(),
            None => return pass(counters, Counter::NotVip),
        };
        add(&mut self.vip_traffic, vip.id, bytes);
        let l2_dsr = vip.dsr == Dsr::L2;

        // The backend: the SYN table, the connection table, else the scheduler.
        let round_robin = matches!(
            vip.scheduler,
            Scheduler::RoundRobin | Scheduler::WeightedRoundRobin
        );
        let hash64 = crate::flow::hash64_abi(&flow.as_flow().to_abi());
        let slot = (hash64 & u64::from(crate::abi::SYN_SLOTS - 1)) as u32;
        let mut hit = None;
        let entry = self.conns.get(&flow).copied();
        if opens && !round_robin {
            // Held in the SYN table; the connection table is not looked at.
            counters.push(Counter::LruMiss);
        } else if let Some(&(_, backend)) = self.syns.get(&slot).filter(|(f, _)| *f == flow) {
            if !icmp_error {
                self.syns.remove(&slot);
            }
            if self.backend_alive(backend).is_some() {
                counters.push(if entry.is_some() && !icmp_error {
                    Counter::LruReopen
                } else {
                    Counter::LruHit
                });
                if !icmp_error {
                    self.conns.insert(flow, (backend, vip.id));
                }
                hit = Some(backend);
            } else {
                counters.push(Counter::LruStale);
            }
        } else {
            match entry {
                Some((backend, _)) if !opens => {
                    if self.backend_alive(backend).is_some() {
                        counters.push(Counter::LruHit);
                        hit = Some(backend);
                    } else {
                        counters.push(Counter::LruStale);
                    }
                }
                Some(_) => counters.push(Counter::LruReopen),
                None => counters.push(Counter::LruMiss),
            }
        }
        let backend = match hit {
            Some(backend) => backend,
            None => {
                let size = vip.ring.len() as u32;
                let index = if round_robin && !icmp_error {
                    let cursor = self.rr_cursors.entry(vip.id).or_default();
                    let index = if *cursor < size { *cursor } else { 0 };
                    *cursor = if index + 1 < size { index + 1 } else { 0 };
                    index
                } else {
                    let hash = if vip.scheduler == Scheduler::SourceHash {
                        source_hash(flow.src)
                    } else {
                        flow_hash(&flow.as_flow())
                    };
                    ring_index(hash, size) as u32
                };
                let backend = vip.ring[index as usize];
                if self.backend_alive(backend).is_none() {
                    return drop(counters, Counter::NoBackend);
                }
                if opens && !round_robin {
                    self.syns.insert(slot, (flow, backend));
                } else if !icmp_error {
                    self.conns.insert(flow, (backend, vip.id));
                }
                backend
            }
        };
        let chosen = Chosen {
            backend,
            vip: vip.id,
            l2_dsr,
        };
        if icmp_error {
            counters.push(Counter::IcmpToBackend);
        }
        if first_fragment {
            let key = FragKey {
                src: saddr,
                dst: daddr,
                id: be16(frame, l2 + 4),
                proto,
            };
            self.frags.insert(key, chosen);
            counters.push(Counter::FragFirst);
        }
        self.forward(frame, l2, tagged, tot_len, chosen, icmp_error, counters)
    }

    /// Steps 6 to 10 (next hop, MTU, VLAN, rewrite, send) for a packet whose
    /// backend is chosen (and alive).
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        frame: &[u8],
        l2: usize,
        tagged: bool,
        tot_len: usize,
        chosen: Chosen,
        icmp_error: bool,
        counters: &mut Vec<Counter>,
    ) -> Step {
        let backend = self.backends[&chosen.backend];
        let mut to_kernel = false;
        let route = self
            .routes
            .get(&backend.addr)
            .copied()
            .unwrap_or(Route::Unreachable);
        let (dmac, smac, tunnel_src, path_mtu, route_mtu, vlan_id) = match route {
            Route::Unreachable => {
                counters.extend([Counter::FibFail, Counter::Drop]);
                return (XdpAction::Drop, None);
            }
            Route::NoNeighbour { tunnel_src } => {
                counters.push(Counter::FibNoNeigh);
                to_kernel = true;
                ([0; 6], [0; 6], tunnel_src, 0, 0, 0)
            }
            Route::Resolved {
                dmac,
                smac,
                tunnel_src,
                path_mtu,
                route_mtu,
                vlan_id,
            } => (dmac, smac, tunnel_src, path_mtu, route_mtu, vlan_id),
        };
        let overhead = if chosen.l2_dsr { 0 } else { IPIP_HLEN };
        let frag_off = be16(frame, l2 + 6);
        let df = frag_off & IP_DF != 0;
        if !to_kernel {
            let len = tot_len + overhead;
            if len > usize::from(path_mtu) {
                if df {
                    let saddr = addr_at(frame, l2 + 12);
                    let allowed =
                        !icmp_error && frag_off & IP_OFFSET == 0 && may_answer(frame, saddr);
                    return self.too_big(frame, l2, path_mtu - overhead as u16, allowed, counters);
                }
                counters.push(Counter::TooBigNoDf);
                if len > usize::from(route_mtu) {
                    to_kernel = true;
                }
            }
            if !to_kernel && (vlan_id != 0) != tagged {
                counters.push(Counter::VlanMismatch);
                to_kernel = true;
            }
        }
        if to_kernel && chosen.l2_dsr {
            counters.extend([Counter::L2Unroutable, Counter::Drop]);
            return (XdpAction::Drop, None);
        }
        let inner = &frame[l2..l2 + tot_len];
        let mut out = frame[..l2].to_vec();
        if !chosen.l2_dsr {
            let id = if df {
                0
            } else {
                let id = self.ip_ids.entry(chosen.backend).or_default();
                *id = id.wrapping_add(1);
                *id
            };
            out.extend(outer_header(inner, tunnel_src, backend.addr, id));
        }
        out.extend_from_slice(inner);
        add(
            &mut self.backend_traffic,
            chosen.backend,
            frame.len() as u64,
        );
        if to_kernel {
            counters.push(Counter::Pass);
            return (XdpAction::Pass, Some(out));
        }
        out[0..6].copy_from_slice(&dmac);
        out[6..12].copy_from_slice(&smac);
        if tagged {
            let tci = (be16(&out, 14) & !0x0fff) | (vlan_id & 0x0fff);
            out[14..16].copy_from_slice(&tci.to_be_bytes());
        }
        counters.push(Counter::Tx);
        (XdpAction::Tx, Some(out))
    }

    /// A DF packet too big for the tunnel: Fragmentation Needed back, when
    /// switched on and `allowed` (no rate limit in the model).
    fn too_big(
        &mut self,
        frame: &[u8],
        l2: usize,
        mtu: u16,
        allowed: bool,
        counters: &mut Vec<Counter>,
    ) -> Step {
        if !self.frag_needed {
            counters.extend([Counter::FragNeeded, Counter::Drop]);
            return (XdpAction::Drop, None);
        }
        counters.push(Counter::FragNeeded);
        if !allowed {
            counters.extend([Counter::IcmpForbidden, Counter::Drop]);
            return (XdpAction::Drop, None);
        }
        let ihl = usize::from(frame[l2] & 0x0f) * 4;
        let quote = &frame[l2..l2 + ihl + 8];
        let mut out = Vec::with_capacity(l2 + 28 + quote.len());
        out.extend_from_slice(&frame[6..12]);
        out.extend_from_slice(&frame[0..6]);
        out.extend_from_slice(&frame[12..l2]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[1] = 0xc0;
        ip[2..4].copy_from_slice(&((28 + quote.len()) as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&IP_DF.to_be_bytes());
        ip[8] = 64;
        ip[9] = ICMP;
        ip[12..16].copy_from_slice(&frame[l2 + 16..l2 + 20]);
        ip[16..20].copy_from_slice(&frame[l2 + 12..l2 + 16]);
        let check = internet_checksum(&ip);
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        out.extend_from_slice(&ip);
        let mut icmp = vec![3u8, 4, 0, 0, 0, 0];
        icmp.extend(mtu.to_be_bytes());
        icmp.extend_from_slice(quote);
        let check = internet_checksum(&icmp);
        icmp[2..4].copy_from_slice(&check.to_be_bytes());
        out.extend(icmp);
        counters.extend([Counter::IcmpFragNeeded, Counter::Tx]);
        (XdpAction::Tx, Some(out))
    }
}

/// A verdict and, if the frame changed, what leaves.
type Step = (XdpAction, Option<Vec<u8>>);

fn add(traffic: &mut HashMap<u32, (u64, u64)>, id: u32, bytes: u64) {
    let entry = traffic.entry(id).or_default();
    entry.0 += 1;
    entry.1 += bytes;
}

fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => TCP,
        Protocol::Udp => UDP,
    }
}

/// The client's flow an ICMP error quotes (a TCP or UDP packet from
/// `vip_addr`), turned around; `quote_len` bytes of the datagram follow the
/// ICMP header at `at`.
fn quoted_flow(frame: &[u8], at: usize, quote_len: usize, vip_addr: Ipv4Addr) -> Option<FlowKey> {
    if frame.len() < at + 20 {
        return None;
    }
    let (version, ihl) = (frame[at] >> 4, usize::from(frame[at] & 0x0f) * 4);
    if version != 4 || ihl < 20 || frame.len() < at + ihl || ihl + 4 > quote_len {
        return None;
    }
    let proto = frame[at + 9];
    if addr_at(frame, at + 12) != vip_addr || be16(frame, at + 6) & IP_OFFSET != 0 {
        return None;
    }
    if proto != TCP && proto != UDP {
        return None;
    }
    let ports = at + ihl;
    Some(FlowKey {
        src: addr_at(frame, at + 16),
        dst: vip_addr,
        sport: be16(frame, ports + 2),
        dport: be16(frame, ports),
        proto,
    })
}

/// The echo reply to the request at `l2` (a 20-byte IPv4 header), in place.
fn echo_reply(frame: &[u8], l2: usize) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[0..6]);
    out[l2 + 12..l2 + 16].copy_from_slice(&frame[l2 + 16..l2 + 20]);
    out[l2 + 16..l2 + 20].copy_from_slice(&frame[l2 + 12..l2 + 16]);
    out[l2 + 8] = 64;
    out[l2 + 10..l2 + 12].fill(0);
    let check = internet_checksum(&out[l2..l2 + 20]);
    out[l2 + 10..l2 + 12].copy_from_slice(&check.to_be_bytes());
    let icmp = l2 + 20;
    let old = be16(frame, icmp);
    out[icmp] = 0;
    let check = checksum_replace(be16(frame, icmp + 2), old, be16(&out, icmp));
    out[icmp + 2..icmp + 4].copy_from_slice(&check.to_be_bytes());
    out
}

/// The outer IPv4 header for `inner`: TOS and DF copied, `id`, TTL 64, IPIP.
fn outer_header(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> [u8; 20] {
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[1] = inner[1];
    ip[2..4].copy_from_slice(&((inner.len() + IPIP_HLEN) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6] = inner[6] & 0x40;
    ip[8] = 64;
    ip[9] = 4;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let check = internet_checksum(&ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    ip
}
