//! The balancer's global counters (`enum counter` in maps.h) and per-VIP and
//! per-backend traffic, summed over CPUs.

use std::fmt;

/// One global counter: a verdict, or why a packet got it.
/// The discriminant is the counter's slot in the `counters` map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Counter {
    /// Verdict: handed to the kernel (non-VIP traffic, or IPIP it must finish).
    Pass = 0,
    /// Verdict: sent back out of the ingress interface.
    Tx,
    /// Verdict: redirected to another interface (`tx_ports`).
    Redirect,
    /// Verdict: dropped.
    Drop,
    /// Passed: neither IPv4 nor IPv6 (ARP, other ethertypes, runt frames).
    NotIpv4,
    /// Passed: IPv4 or IPv6 but not TCP/UDP to a VIP.
    NotVip,
    /// Truncated or invalid IPv4/TCP/UDP/ICMP header, or an IPv4 total length
    /// below the header or past the bytes present: dropped if an all-ports VIP
    /// claims it, else passed.
    Malformed,
    /// Established flow found in the connection table.
    LruHit,
    /// New flow: not in the connection table; chosen from the ring.
    LruMiss,
    /// Connection-table entry pointed at a backend that is no longer alive; re-hashed.
    LruStale,
    /// Dropped: the ring slot is empty or its backend is not alive.
    NoBackend,
    /// No neighbour entry for the next hop: L3 passed encapsulated so the kernel resolves it.
    FibNoNeigh,
    /// Dropped: no route to the backend (or forwarding disabled on the ingress interface).
    FibFail,
    /// Dropped: egress interface not registered, or it has no tunnel source address.
    NoIface,
    /// VLAN tagging of ingress and egress disagree: L3 passed encapsulated.
    VlanMismatch,
    /// Dropped: the frame's head could not grow for the outer header.
    EncapFail,
    /// Dropped: the egress interface is not in `tx_ports`.
    NoTxPort,
    /// A later fragment (offset above 0), sent where its datagram's first fragment went.
    Fragment,
    /// A DF packet (any IPv6 packet) larger than the tunnel MTU: answered (`icmp_frag_needed`) or dropped.
    FragNeeded,
    /// Dropped: L2 DSR packet that only the kernel could have sent (no neighbour, VLAN mismatch, too big).
    L2Unroutable,
    /// Verdict tx: ICMP Fragmentation Needed (ICMPv6 Packet Too Big) sent back to the client.
    IcmpFragNeeded,
    /// Dropped: a Fragmentation Needed held back by the per-CPU rate limit.
    IcmpSuppressed,
    /// Larger than the tunnel MTU without DF: sent with the outer DF clear, for the path to fragment.
    TooBigNoDf,
    /// Verdict tx: an echo request to a VIP address, answered.
    IcmpEcho,
    /// An ICMP error quoting a VIP flow, sent to that flow's backend.
    IcmpToBackend,
    /// First fragment of a datagram: balanced by its ports and remembered for the later ones.
    FragFirst,
    /// Dropped: a later fragment whose first fragment was not seen (or is
    /// forgotten), to an address and protocol an all-ports VIP claims.
    FragOrphan,
    /// A TCP SYN whose 5-tuple was in the connection table (a reused client
    /// port): placed by the scheduler like a new flow, the entry replaced.
    LruReopen,
    /// Dropped: the frame would draw ICMP (Fragmentation Needed, an echo reply)
    /// that RFC 1122 and RFC 1812 forbid: about an ICMP error or a later
    /// fragment, to a source that is no single host, or for an Ethernet
    /// broadcast or multicast frame.
    IcmpForbidden,
    /// Passed: a later fragment of no datagram balanced here that no all-ports
    /// VIP claims (the host's own, e.g. to an unbalanced port).
    FragPassed,
    /// Dropped: larger than the route MTU toward an IPv6 backend without DF
    /// (an IPv4 packet in IPv6), or an IPv6 packet of 1280 bytes or less that
    /// does not fit a tunnel below the IPv6 minimum MTU: nothing on the way
    /// fragments IPv6.
    TooBigDropped,
}

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Counter; 31] = [
        Counter::Pass,
        Counter::Tx,
        Counter::Redirect,
        Counter::Drop,
        Counter::NotIpv4,
        Counter::NotVip,
        Counter::Malformed,
        Counter::LruHit,
        Counter::LruMiss,
        Counter::LruStale,
        Counter::NoBackend,
        Counter::FibNoNeigh,
        Counter::FibFail,
        Counter::NoIface,
        Counter::VlanMismatch,
        Counter::EncapFail,
        Counter::NoTxPort,
        Counter::Fragment,
        Counter::FragNeeded,
        Counter::L2Unroutable,
        Counter::IcmpFragNeeded,
        Counter::IcmpSuppressed,
        Counter::TooBigNoDf,
        Counter::IcmpEcho,
        Counter::IcmpToBackend,
        Counter::FragFirst,
        Counter::FragOrphan,
        Counter::LruReopen,
        Counter::IcmpForbidden,
        Counter::FragPassed,
        Counter::TooBigDropped,
    ];

    /// Stable snake_case name, for metrics and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Pass => "pass",
            Counter::Tx => "tx",
            Counter::Redirect => "redirect",
            Counter::Drop => "drop",
            Counter::NotIpv4 => "not_ipv4",
            Counter::NotVip => "not_vip",
            Counter::Malformed => "malformed",
            Counter::LruHit => "lru_hit",
            Counter::LruMiss => "lru_miss",
            Counter::LruStale => "lru_stale",
            Counter::NoBackend => "no_backend",
            Counter::FibNoNeigh => "fib_no_neigh",
            Counter::FibFail => "fib_fail",
            Counter::NoIface => "no_iface",
            Counter::VlanMismatch => "vlan_mismatch",
            Counter::EncapFail => "encap_fail",
            Counter::NoTxPort => "no_tx_port",
            Counter::Fragment => "fragment",
            Counter::FragNeeded => "frag_needed",
            Counter::L2Unroutable => "l2_unroutable",
            Counter::IcmpFragNeeded => "icmp_frag_needed",
            Counter::IcmpSuppressed => "icmp_suppressed",
            Counter::TooBigNoDf => "too_big_no_df",
            Counter::IcmpEcho => "icmp_echo",
            Counter::IcmpToBackend => "icmp_to_backend",
            Counter::FragFirst => "frag_first",
            Counter::FragOrphan => "frag_orphan",
            Counter::LruReopen => "lru_reopen",
            Counter::IcmpForbidden => "icmp_forbidden",
            Counter::FragPassed => "frag_passed",
            Counter::TooBigDropped => "too_big_dropped",
        }
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A snapshot of every global counter, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    values: [u64; Counter::ALL.len()],
}

impl Counters {
    pub(crate) fn from_slots(slots: impl Fn(u32) -> u64) -> Counters {
        let mut values = [0; Counter::ALL.len()];
        for (value, counter) in values.iter_mut().zip(Counter::ALL) {
            *value = slots(counter as u32);
        }
        Counters { values }
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    /// (counter, value) for every counter, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.into_iter().zip(self.values.iter().copied())
    }

    /// How much each counter grew since `earlier`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut values = self.values;
        for (value, before) in values.iter_mut().zip(earlier.values) {
            *value = value.wrapping_sub(before);
        }
        Counters { values }
    }
}

impl fmt::Display for Counters {
    /// One "name value" line per non-zero counter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (counter, value) in self.iter().filter(|(_, v)| *v != 0) {
            writeln!(f, "{counter} {value}")?;
        }
        Ok(())
    }
}

/// Packets and bytes (frame length at ingress) through a VIP or to a backend, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}
