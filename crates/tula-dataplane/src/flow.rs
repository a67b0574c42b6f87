//! Client flows and how the balancer hashes them onto a Maglev ring: the
//! Rust twin of `flow_hash()` and the ring indexing in `bpf/balancer.c`.
//! The two must agree bit for bit; `tests/flow_hash.rs` checks them against
//! the kernel.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::abi;

/// Transport protocol of a VIP or a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
        }
    }

    /// The protocol with IP protocol number `number`, if it is TCP or UDP.
    pub fn from_number(number: u8) -> Option<Protocol> {
        match i32::from(number) {
            libc::IPPROTO_TCP => Some(Protocol::Tcp),
            libc::IPPROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A client flow to a VIP: the connection table's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub client: SocketAddrV4,
    pub vip: SocketAddrV4,
    pub protocol: Protocol,
}

impl Flow {
    pub(crate) fn to_abi(self) -> abi::Flow {
        abi::Flow {
            src: abi::addr_to_raw(*self.client.ip()),
            dst: abi::addr_to_raw(*self.vip.ip()),
            sport: self.client.port().to_be(),
            dport: self.vip.port().to_be(),
            proto: self.protocol.number(),
            pad: [0; 3],
        }
    }

    /// `None` for a key whose protocol is neither TCP nor UDP (never written by the balancer).
    pub(crate) fn from_abi(raw: &abi::Flow) -> Option<Flow> {
        Some(Flow {
            client: SocketAddrV4::new(abi::addr_from_raw(raw.src), u16::from_be(raw.sport)),
            vip: SocketAddrV4::new(abi::addr_from_raw(raw.dst), u16::from_be(raw.dport)),
            protocol: Protocol::from_number(raw.proto)?,
        })
    }
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.protocol, self.client, self.vip)
    }
}

const FLOW_HASH_SEED: u64 = 0x7475_6c61_2d76_3031; // "tula-v01", as in balancer.c

fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x
}

/// `flow_hash64()` in balancer.c: the flow hash before it is cut to 32 bits.
pub(crate) fn hash64_abi(flow: &abi::Flow) -> u64 {
    let addrs = u64::from(flow.dst) << 32 | u64::from(flow.src);
    let rest = u64::from(flow.proto) << 32 | u64::from(flow.dport) << 16 | u64::from(flow.sport);
    mix64(mix64(rest ^ FLOW_HASH_SEED) ^ addrs)
}

fn hash_abi(flow: &abi::Flow) -> u32 {
    (hash64_abi(flow) >> 32) as u32
}

/// `flow6_hash64()` in balancer.c: the ports and protocol as for IPv4, then
/// each 64 bits of the addresses (as loaded from memory) mixed in turn.
pub(crate) fn hash64_abi6(flow: &abi::Flow6) -> u64 {
    let rest = u64::from(flow.proto) << 32 | u64::from(flow.dport) << 16 | u64::from(flow.sport);
    let half = |words: &[u32; 4], i: usize| u64::from(words[2 * i + 1]) << 32 | u64::from(words[2 * i]);
    let mut h = mix64(rest ^ FLOW_HASH_SEED);
    for word in [half(&flow.src, 0), half(&flow.src, 1), half(&flow.dst, 0), half(&flow.dst, 1)] {
        h = mix64(h ^ word);
    }
    h
}

/// `addr6_tag()` in balancer.c: what an IPv6 backend's entry holds as its
/// `addr`, and a path filled for the address records.
pub(crate) fn addr6_tag(addr: Ipv6Addr) -> u32 {
    let words = abi::addr6_to_raw(addr);
    let half = |i: usize| u64::from(words[2 * i + 1]) << 32 | u64::from(words[2 * i]);
    (mix64(mix64(half(0) ^ FLOW_HASH_SEED) ^ half(1)) >> 32) as u32
}

/// An IPv6 client flow to an IPv6 VIP, as the balancer keys it (`struct flow6`).
pub(crate) fn flow6_abi(client: SocketAddrV6, vip: SocketAddrV6, protocol: Protocol) -> abi::Flow6 {
    abi::Flow6 {
        src: abi::addr6_to_raw(*client.ip()),
        dst: abi::addr6_to_raw(*vip.ip()),
        sport: client.port().to_be(),
        dport: vip.port().to_be(),
        proto: protocol.number(),
        pad: [0; 3],
    }
}

/// The hash the balancer gives a new IPv6 flow under the Maglev scheduler.
pub fn flow6_hash(client: SocketAddrV6, vip: SocketAddrV6, protocol: Protocol) -> u32 {
    (hash64_abi6(&flow6_abi(client, vip, protocol)) >> 32) as u32
}

/// The outer IPv6 flow label the balancer gives the packets of an IPv4 flow
/// (`flow_label()` in balancer.c: 20 bits of the flow's 64-bit hash).
pub fn flow_label(flow: &Flow) -> u32 {
    hash64_abi(&flow.to_abi()) as u32 & 0xfffff
}

/// The same for an IPv6 flow.
pub fn flow6_label(client: SocketAddrV6, vip: SocketAddrV6, protocol: Protocol) -> u32 {
    hash64_abi6(&flow6_abi(client, vip, protocol)) as u32 & 0xfffff
}

/// `conn_check()` in balancer.c: what a connection-table entry's `check`
/// must be for `flow` (by its 64-bit hash) and `backend`; never 0.
pub(crate) fn conn_check(hash64: u64, backend: u32) -> u32 {
    mix64(hash64 ^ u64::from(backend)) as u32 | 1
}

/// The hash the balancer gives a new flow under the Maglev scheduler.
pub fn flow_hash(flow: &Flow) -> u32 {
    hash_abi(&flow.to_abi())
}

/// The hash the balancer gives a new flow under the source-hash scheduler:
/// the client address alone, so every flow of a client lands on one backend.
pub fn source_hash(client: Ipv4Addr) -> u32 {
    hash_abi(&abi::Flow {
        src: abi::addr_to_raw(client),
        ..abi::Flow::default()
    })
}

/// The ring slot a hash selects, as the balancer computes it (one definition, in tula-maglev).
pub use tula_maglev::ring_index;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_hash_ignores_everything_but_the_client_address() {
        let client = Ipv4Addr::new(198, 18, 0, 9);
        let a = Flow {
            client: SocketAddrV4::new(client, 1000),
            vip: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 80),
            protocol: Protocol::Tcp,
        };
        let b = Flow {
            client: SocketAddrV4::new(client, 2000),
            ..a
        };
        assert_ne!(flow_hash(&a), flow_hash(&b));
        assert_eq!(source_hash(client), source_hash(client));
        assert_ne!(
            source_hash(client),
            source_hash(Ipv4Addr::new(198, 18, 0, 10))
        );
    }

    #[test]
    fn flow_hash_spreads_nearby_ports_over_the_whole_range() {
        // Consecutive source ports must not cluster: count hashes per 1/16 of the range.
        let mut buckets = [0u32; 16];
        for port in 0..16_000u16 {
            let flow = Flow {
                client: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 9), port),
                vip: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 443),
                protocol: Protocol::Tcp,
            };
            buckets[(flow_hash(&flow) >> 28) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (880..=1120).contains(&b)),
            "{buckets:?}"
        );
    }
}
