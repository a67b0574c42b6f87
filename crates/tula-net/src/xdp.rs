//! What the kernel says about XDP on an interface: the program attached and
//! its mode, a veth's peer (possibly in another namespace) and whether the
//! peer runs XDP, the driver's XDP features, and the neighbour state of a
//! next hop.

use std::net::Ipv4Addr;

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkInfo, LinkMessage, LinkXdp, XdpAttached,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::AddressFamily;

use crate::link::{netlink, parse_link};
use crate::NetError;

/// How an XDP program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// No XDP program.
    None,
    /// In the driver (fast).
    Native,
    /// Generic (skb) mode: works everywhere, several times slower.
    Generic,
    /// Offloaded to the NIC.
    Offload,
    /// More than one mode at once.
    Multiple,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::None => "none",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Offload => "offload",
            XdpMode::Multiple => "multiple",
        }
    }
}

/// An interface's XDP state and, for a veth, its peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkXdpState {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    /// The link kind (`veth`, `bridge`, ...) for virtual links; `None` for hardware.
    pub kind: Option<String>,
    pub xdp: XdpMode,
    /// The other end, when this is a veth.
    pub peer: Option<VethPeer>,
}

/// The other end of a veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPeer {
    pub index: u32,
    /// `None` when the peer could not be read (its namespace is gone or not ours to see).
    pub name: Option<String>,
    /// The peer's namespace id as seen from here (`link-netnsid`); `None`: same namespace.
    pub netnsid: Option<i32>,
    /// The peer's XDP mode; `None` when it could not be read.
    pub xdp: Option<XdpMode>,
}

impl LinkXdpState {
    /// True when frames this interface sends with XDP_TX are dropped: a veth
    /// whose peer runs no XDP program (the peer's receive path for XDP frames
    /// only exists while the peer has a program).
    pub fn xdp_tx_black_hole(&self) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|peer| peer.xdp == Some(XdpMode::None))
    }
}

fn xdp_mode(msg: &LinkMessage) -> XdpMode {
    let attached = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
            LinkXdp::Attached(attached) => Some(*attached),
            _ => None,
        }),
        _ => None,
    });
    match attached {
        None | Some(XdpAttached::None) => XdpMode::None,
        Some(XdpAttached::Driver) => XdpMode::Native,
        Some(XdpAttached::SocketBuffer) => XdpMode::Generic,
        Some(XdpAttached::Hardware) => XdpMode::Offload,
        Some(_) => XdpMode::Multiple,
    }
}

fn link_kind(msg: &LinkMessage) -> Option<InfoKind> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind.clone()),
            _ => None,
        }),
        _ => None,
    })
}

/// The link with index `index`, in the namespace `netnsid` names (as seen from
/// here) or in this one. `None` when there is no such link.
fn link_message(index: u32, netnsid: Option<i32>) -> Result<Option<LinkMessage>, NetError> {
    let what = format!("looking up interface {index}");
    netlink(&what, |h| async move {
        let mut request = h.link().get().match_index(index);
        if let Some(id) = netnsid {
            // IFLA_TARGET_NETNSID: the kernel answers from the peer's namespace.
            request
                .message_mut()
                .attributes
                .push(LinkAttribute::IfNetnsId(id));
        }
        let mut stream = request.execute();
        match stream.next().await {
            Some(Ok(msg)) => Ok(Some(msg)),
            Some(Err(rtnetlink::Error::NetlinkError(e)))
                if matches!(-e.raw_code(), libc::ENODEV | libc::EINVAL | libc::EPERM) =>
            {
                Ok(None)
            }
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    })
}

/// The XDP state of the interface called `name` and, for a veth, of its peer.
pub fn link_xdp(name: &str) -> Result<LinkXdpState, NetError> {
    let index = crate::link(name)?.index;
    let msg =
        link_message(index, None)?.ok_or_else(|| NetError::NoSuchLink { name: name.into() })?;
    let link = parse_link(&msg);
    let kind = link_kind(&msg);
    let peer = if kind == Some(InfoKind::Veth) {
        let peer_index = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Link(i) => Some(*i),
            _ => None,
        });
        let netnsid = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkNetNsId(id) => Some(*id),
            _ => None,
        });
        match peer_index {
            Some(peer_index) => {
                let peer = link_message(peer_index, netnsid)?;
                Some(VethPeer {
                    index: peer_index,
                    name: peer.as_ref().map(|m| parse_link(m).name),
                    netnsid,
                    xdp: peer.as_ref().map(xdp_mode),
                })
            }
            None => None,
        }
    } else {
        None
    };
    Ok(LinkXdpState {
        name: link.name,
        index,
        mtu: link.mtu,
        kind: kind.map(|k| k.to_string()),
        xdp: xdp_mode(&msg),
        peer,
    })
}

/// The state of the neighbour entry for `addr` on the interface with index
/// `index` (`reachable`, `stale`, `failed`, ...); `None` when there is none.
pub fn neighbour_state(index: u32, addr: Ipv4Addr) -> Result<Option<String>, NetError> {
    let msgs: Vec<NeighbourMessage> = netlink(
        &format!("reading the neighbour entry of {addr}"),
        |h| async move { h.neighbours().get().execute().try_collect().await },
    )?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.ifindex == index && m.header.family == AddressFamily::Inet)
        .find(|m| {
            m.attributes.iter().any(|a| {
                matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) if *ip == addr)
            })
        })
        .map(|m| format!("{:?}", m.header.state).to_lowercase()))
}

/// An interface's native XDP support as its driver declares it (the netdev
/// generic-netlink family, Linux 6.3+): `Some(true)` when it supports
/// XDP_PASS/DROP/TX in the driver, `None` when the kernel cannot say.
pub fn native_xdp_supported(index: u32) -> Option<bool> {
    crate::genl::netdev_xdp_features(index).map(|features| features & NETDEV_XDP_ACT_BASIC != 0)
}

/// NETDEV_XDP_ACT_BASIC: XDP_PASS, XDP_DROP, XDP_ABORTED and XDP_TX in the driver.
const NETDEV_XDP_ACT_BASIC: u64 = 1;
