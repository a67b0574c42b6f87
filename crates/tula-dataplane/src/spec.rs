//! The typed values of the data plane's API: VIP keys and specs, backends,
//! connection-table entries, interface and ICMP settings, verdicts. Each
//! converts to and from its `abi` mirror here; [`Dataplane`](crate::Dataplane)
//! writes and reads them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::abi;
use crate::error::{DataplaneError, Result};
use crate::flow::Protocol;

/// A VIP: packets to `addr:port` over `protocol` are balanced. Port 0 means
/// all ports. IPv4 VIPs live in the `vips` map, IPv6 ones in `vips6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub addr: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

/// A VIP key as one of the two maps has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RawVipKey {
    V4(abi::VipKey),
    V6(abi::Vip6Key),
}

impl VipKey {
    pub(crate) fn to_abi(self) -> RawVipKey {
        let (port, proto) = (self.port.to_be(), self.protocol.number());
        match self.addr {
            IpAddr::V4(addr) => RawVipKey::V4(abi::VipKey {
                addr: abi::addr_to_raw(addr),
                port,
                proto,
                pad: 0,
            }),
            IpAddr::V6(addr) => RawVipKey::V6(abi::Vip6Key {
                addr: abi::addr6_to_raw(addr),
                port,
                proto,
                pad: 0,
            }),
        }
    }

    pub(crate) fn from_abi(raw: &abi::VipKey) -> Option<VipKey> {
        Some(VipKey {
            addr: abi::addr_from_raw(raw.addr).into(),
            port: u16::from_be(raw.port),
            protocol: Protocol::from_number(raw.proto)?,
        })
    }

    pub(crate) fn from_abi6(raw: &abi::Vip6Key) -> Option<VipKey> {
        Some(VipKey {
            addr: abi::addr6_from_raw(raw.addr).into(),
            port: u16::from_be(raw.port),
            protocol: Protocol::from_number(raw.proto)?,
        })
    }
}

/// `tcp 203.0.113.1:80`, `tcp [2001:db8::1]:80`.
impl std::fmt::Display for VipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.protocol, SocketAddr::new(self.addr, self.port))
    }
}

/// How packets reach the chosen backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dsr {
    /// Layer 3: an outer IPv4 header (IPIP) to the backend's address.
    L3Ipip,
    /// Layer 2: only the Ethernet addresses change; the backend must be on-link.
    L2,
}

/// How a new flow picks its backend, and what the VIP's ring must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheduler {
    /// The Maglev ring indexed by a hash of the 5-tuple.
    Maglev,
    /// The Maglev ring indexed by a hash of the client address only.
    SourceHash,
    /// The ring walked slot by slot by a per-CPU cursor: give it a
    /// [`round_robin_ring`](crate::round_robin_ring) of the backends at weight 1.
    RoundRobin,
    /// Like `RoundRobin`, over a [`round_robin_ring`](crate::round_robin_ring)
    /// with the backends' weights. (The balancer treats both alike; the
    /// difference is the ring, and the flag lets user space read it back.)
    WeightedRoundRobin,
}

/// What the data plane knows about a VIP besides its ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipSpec {
    /// Index of the VIP's traffic counters, below `max_vips`. VIP keys may share one.
    pub id: u32,
    pub dsr: Dsr,
    pub scheduler: Scheduler,
    /// Answer ICMP echo requests to the VIP's address in XDP. The address is
    /// answered while any VIP on it says so.
    pub icmp_echo: bool,
}

impl VipSpec {
    pub(crate) fn flags(&self) -> u32 {
        let dsr = match self.dsr {
            Dsr::L3Ipip => 0,
            Dsr::L2 => abi::VIP_F_L2_DSR,
        };
        let scheduler = match self.scheduler {
            Scheduler::Maglev => 0,
            Scheduler::SourceHash => abi::VIP_F_SOURCE_HASH,
            Scheduler::RoundRobin => abi::VIP_F_ROUND_ROBIN,
            Scheduler::WeightedRoundRobin => abi::VIP_F_ROUND_ROBIN | abi::VIP_F_WEIGHTED,
        };
        let echo = if self.icmp_echo {
            0
        } else {
            abi::VIP_F_NO_ICMP_ECHO
        };
        dsr | scheduler | echo
    }

    pub(crate) fn from_abi(meta: &abi::VipMeta) -> VipSpec {
        VipSpec {
            id: meta.id,
            dsr: if meta.flags & abi::VIP_F_L2_DSR != 0 {
                Dsr::L2
            } else {
                Dsr::L3Ipip
            },
            scheduler: if meta.flags & abi::VIP_F_ROUND_ROBIN != 0 {
                if meta.flags & abi::VIP_F_WEIGHTED != 0 {
                    Scheduler::WeightedRoundRobin
                } else {
                    Scheduler::RoundRobin
                }
            } else if meta.flags & abi::VIP_F_SOURCE_HASH != 0 {
                Scheduler::SourceHash
            } else {
                Scheduler::Maglev
            },
            icmp_echo: meta.flags & abi::VIP_F_NO_ICMP_ECHO == 0,
        }
    }
}

/// A backend as the data plane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    /// An IPv6 backend takes IPv6 VIPs' packets in IP6IP6, IPv4 VIPs' in IPv4-in-IPv6.
    pub addr: IpAddr,
    /// Only alive backends get packets; a connection-table entry for one that
    /// is not alive is ignored and the flow re-hashed.
    pub alive: bool,
}

/// A connection-table entry: the backend a flow sticks to, and the id of
/// the VIP it was sent to (found from the flow by the VIP map).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Conn {
    pub backend: u32,
    pub vip: u32,
}

/// How an egress interface is set up for the balancer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Outer source address of IPIP packets leaving here; defaults to the
    /// interface's primary IPv4 address.
    pub tunnel_src: Option<Ipv4Addr>,
    /// Outer source address of IPv6 tunnels (IP6IP6, IPv4 in IPv6) leaving
    /// here; defaults to the interface's first global IPv6 address.
    pub tunnel_src6: Option<Ipv6Addr>,
    /// Set for a VLAN device: frames leave tagged through its lower device.
    pub vlan: Option<Vlan>,
    /// The MTU of the path beyond this interface toward the backends, when it
    /// is smaller than the route MTU (the link's own): encapsulated packets
    /// leaving here must fit it, so the tunnel MTU is 20 less. `None`: the
    /// route MTU. A value above the route MTU has no effect.
    pub path_mtu: Option<u16>,
}

/// How the balancer answers a DF packet too big for the tunnel: ICMP
/// Fragmentation Needed, at most `per_second` a second per CPU after a burst
/// of `burst`. With `frag_needed` off such packets are dropped unanswered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpSettings {
    pub frag_needed: bool,
    pub per_second: u32,
    pub burst: u32,
}

impl Default for IcmpSettings {
    fn default() -> Self {
        IcmpSettings {
            frag_needed: true,
            per_second: 100,
            burst: 50,
        }
    }
}

const NS_PER_SECOND: u64 = 1_000_000_000;

impl IcmpSettings {
    pub(crate) fn to_abi(self) -> abi::Settings {
        let interval = NS_PER_SECOND / u64::from(self.per_second.max(1));
        abi::Settings {
            flags: if self.frag_needed {
                0
            } else {
                abi::SETTINGS_F_NO_FRAG_NEEDED
            },
            backend_generation: 0,
            icmp_interval_ns: interval,
            icmp_burst_ns: interval * u64::from(self.burst),
        }
    }

    pub(crate) fn from_abi(raw: &abi::Settings) -> IcmpSettings {
        let interval = raw.icmp_interval_ns.max(1);
        IcmpSettings {
            frag_needed: raw.flags & abi::SETTINGS_F_NO_FRAG_NEEDED == 0,
            per_second: (NS_PER_SECOND / interval).min(u32::MAX.into()) as u32,
            burst: (raw.icmp_burst_ns / interval).min(u32::MAX.into()) as u32,
        }
    }
}

/// An 802.1Q VLAN device's tag and the device its frames really leave by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vlan {
    pub id: u16,
    pub lower: String,
}

/// An XDP program's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpAction {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
}

impl XdpAction {
    pub(crate) fn from_code(code: u32) -> Result<XdpAction> {
        Ok(match code {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => return Err(DataplaneError::UnknownAction(other)),
        })
    }
}

/// The attach mode an interface got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Native,
    /// In the kernel's generic path (slower; the driver has no XDP support).
    Generic,
}
