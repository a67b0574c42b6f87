//! Links, addresses, routes and neighbours over rtnetlink, in the calling
//! thread's namespace. Each call makes its own socket and a small
//! single-threaded runtime, so callers stay synchronous.

use crate::NetError;
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourExtFlags, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use netlink_packet_route::IpProtocol;
use rtnetlink::{Handle, LinkBridge, LinkIp6Tnl, LinkIpIp, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub link: String,
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
    /// An IPv6 privacy address (RFC 8981, IFA_F_TEMPORARY): the kernel
    /// replaces it after a while, so nothing should be configured to reach it.
    pub temporary: bool,
}

/// Interface counters, as `ip -s link` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The kernel's answer to `ip route get DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dev: String,
    pub index: u32,
    pub gateway: Option<Ipv4Addr>,
    pub prefsrc: Option<Ipv4Addr>,
}

/// Runs one netlink conversation on a socket opened in this thread's namespace.
pub(crate) fn netlink<T, F, Fut>(what: &str, f: F) -> Result<T, NetError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| NetError::io("starting a netlink runtime", e))?;
    rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| NetError::io("opening a netlink socket", e))?;
        let task = tokio::spawn(conn);
        let result = f(handle).await.map_err(|e| netlink_error(what, e));
        task.abort();
        result
    })
}

fn netlink_error(what: &str, e: rtnetlink::Error) -> NetError {
    match e {
        rtnetlink::Error::NetlinkError(msg) => NetError::io(what, msg.to_io()),
        other => NetError::Netlink {
            what: what.into(),
            message: other.to_string(),
        },
    }
}

fn errno_is(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

pub(crate) fn parse_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: [0; 6],
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(mac) if mac.len() == 6 => link.mac.copy_from_slice(mac),
            _ => {}
        }
    }
    link
}

/// All interfaces.
pub fn links() -> Result<Vec<Link>, NetError> {
    let msgs: Vec<LinkMessage> = netlink("listing interfaces", |h| async move {
        h.link().get().execute().try_collect().await
    })?;
    Ok(msgs.iter().map(parse_link).collect())
}

/// The interface called `name`.
pub fn link(name: &str) -> Result<Link, NetError> {
    let what = format!("looking up interface {name}");
    let owned = name.to_string();
    let found = netlink(&what, |h| async move {
        let mut s = h.link().get().match_name(owned).execute();
        match s.next().await {
            Some(Ok(msg)) => Ok(Some(msg)),
            Some(Err(e)) if errno_is(&e, libc::ENODEV) => Ok(None),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    })?;
    found
        .map(|m| parse_link(&m))
        .ok_or_else(|| NetError::NoSuchLink { name: name.into() })
}

fn index_of(name: &str) -> Result<u32, NetError> {
    link(name).map(|l| l.index)
}

/// Creates a veth pair; `peer` goes straight into `peer_ns` when given.
pub fn add_veth(name: &str, peer: &str, peer_ns: Option<&crate::Netns>) -> Result<(), NetError> {
    netlink(
        &format!("creating veth pair {name}/{peer}"),
        |h| async move {
            h.link()
                .add(LinkVeth::new(name, peer).build())
                .execute()
                .await
        },
    )?;
    if let Some(ns) = peer_ns {
        move_link(peer, ns)?;
    }
    Ok(())
}

/// Creates a bridge (a switch for a shared segment).
pub fn add_bridge(name: &str) -> Result<(), NetError> {
    netlink(&format!("creating bridge {name}"), |h| async move {
        h.link().add(LinkBridge::new(name).build()).execute().await
    })
}

/// Makes `link` a port of `bridge`.
pub fn set_master(link: &str, bridge: &str) -> Result<(), NetError> {
    let (index, master) = (index_of(link)?, index_of(bridge)?);
    netlink(
        &format!("adding {link} to bridge {bridge}"),
        |h| async move {
            h.link()
                .set(LinkUnspec::new_with_index(index).controller(master).build())
                .execute()
                .await
        },
    )
}

/// Moves an interface into another namespace.
pub fn move_link(name: &str, ns: &crate::Netns) -> Result<(), NetError> {
    use std::os::fd::AsRawFd;
    let index = index_of(name)?;
    let file = std::fs::File::open(ns.path())
        .map_err(|e| NetError::io(format!("opening namespace {}", ns.name()), e))?;
    let fd = file.as_raw_fd();
    netlink(
        &format!("moving {name} into namespace {}", ns.name()),
        |h| async move {
            h.link()
                .set(LinkUnspec::new_with_index(index).setns_by_fd(fd).build())
                .execute()
                .await
        },
    )
}

/// Brings an interface up.
pub fn set_up(name: &str) -> Result<(), NetError> {
    let index = index_of(name)?;
    netlink(&format!("bringing {name} up"), |h| async move {
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
    })
}

/// Brings an interface down.
pub fn set_down(name: &str) -> Result<(), NetError> {
    let index = index_of(name)?;
    netlink(&format!("setting {name} down"), |h| async move {
        h.link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
    })
}

/// The RTM_NEWLINK message for `ip tunnel add NAME mode ipip local LOCAL`.
pub fn ipip_tunnel_request(name: &str, local: Ipv4Addr) -> LinkMessage {
    LinkIpIp::new(name).local(local).build()
}

/// Creates an IPIP tunnel device (needs the kernel's ipip module).
pub fn add_ipip_tunnel(name: &str, local: Ipv4Addr) -> Result<(), NetError> {
    let message = ipip_tunnel_request(name, local);
    netlink(
        &format!("creating IPIP tunnel {name} with local {local}"),
        |h| async move { h.link().add(message).execute().await },
    )
}

/// The RTM_NEWLINK message for `ip -6 tunnel add NAME mode any local LOCAL`:
/// mode any (protocol 0) takes both IP6IP6 and IPv4 in IPv6.
pub fn ip6_tunnel_request(name: &str, local: Ipv6Addr) -> LinkMessage {
    LinkIp6Tnl::new(name).local(local).mode(IpProtocol::Hopopts).build()
}

/// Creates an IPv6 tunnel device (needs the kernel's ip6_tunnel module).
pub fn add_ip6_tunnel(name: &str, local: Ipv6Addr) -> Result<(), NetError> {
    let message = ip6_tunnel_request(name, local);
    netlink(
        &format!("creating IPv6 tunnel {name} with local {local}"),
        |h| async move { h.link().add(message).execute().await },
    )
}

/// Sets an interface's MTU.
pub fn set_mtu(name: &str, mtu: u32) -> Result<(), NetError> {
    let index = index_of(name)?;
    netlink(&format!("setting MTU {mtu} on {name}"), |h| async move {
        h.link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
    })
}

/// Deletes an interface (for a veth, both ends go).
pub fn delete_link(name: &str) -> Result<(), NetError> {
    let index = index_of(name)?;
    netlink(&format!("deleting {name}"), |h| async move {
        h.link().del(index).execute().await
    })
}

fn parse_address(msg: &AddressMessage, names: &[Link]) -> Option<Address> {
    let addr = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let addr = addr.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    let link = names
        .iter()
        .find(|l| l.index == msg.header.index)
        .map(|l| l.name.clone())
        .unwrap_or_default();
    // IFA_F_TEMPORARY is IFA_F_SECONDARY's bit; for IPv6 it means a privacy address.
    let secondary = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Flags(flags) => Some(flags.contains(AddressFlags::Secondary)),
        _ => None,
    });
    let secondary = secondary.unwrap_or(msg.header.flags.contains(AddressHeaderFlags::Secondary));
    Some(Address {
        link,
        index: msg.header.index,
        addr,
        prefix: msg.header.prefix_len,
        temporary: addr.is_ipv6() && secondary,
    })
}

/// Every address on every interface, primary addresses first per interface.
pub fn addresses() -> Result<Vec<Address>, NetError> {
    let names = links()?;
    let msgs: Vec<AddressMessage> = netlink("listing addresses", |h| async move {
        h.address().get().execute().try_collect().await
    })?;
    Ok(msgs
        .iter()
        .filter_map(|m| parse_address(m, &names))
        .collect())
}

fn find_address(link: &str, addr: IpAddr, prefix: u8) -> Result<Option<AddressMessage>, NetError> {
    let index = index_of(link)?;
    let msgs: Vec<AddressMessage> =
        netlink(&format!("listing addresses of {link}"), |h| async move {
            h.address()
                .get()
                .set_link_index_filter(index)
                .execute()
                .try_collect()
                .await
        })?;
    Ok(msgs.into_iter().find(|m| {
        m.header.prefix_len == prefix
            && m.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(ip) | AddressAttribute::Address(ip) if *ip == addr))
    }))
}

/// Adds `addr/prefix` to `link`. `Ok(false)`: it was already there. An IPv6
/// address is added `nodad` (as `ip addr add ... nodad`), and returns once
/// it is usable: not tentative, and its local route in place.
pub fn add_address(link: &str, addr: IpAddr, prefix: u8) -> Result<bool, NetError> {
    if find_address(link, addr, prefix)?.is_some() {
        return Ok(false);
    }
    let index = index_of(link)?;
    netlink(&format!("adding {addr}/{prefix} to {link}"), |h| async move {
        let mut request = h.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            // Duplicate address detection would leave it tentative (unusable) for a second or more.
            request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        request.execute().await
    })?;
    if let IpAddr::V6(v6) = addr {
        wait_local_route6(v6)?;
    }
    Ok(true)
}

/// The kernel installs an IPv6 address's local route from a work queue, even
/// `nodad`: until then, connecting to the address fails with EHOSTUNREACH.
fn wait_local_route6(addr: Ipv6Addr) -> Result<(), NetError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(addr, 128).build();
        let routes: Vec<_> = netlink(&format!("looking up the route to {addr}"), |h| async move {
            match h.route().get(msg).execute().try_collect::<Vec<_>>().await {
                Err(e) if errno_is(&e, libc::ENETUNREACH) || errno_is(&e, libc::EHOSTUNREACH) => Ok(Vec::new()),
                other => other,
            }
        })?;
        if routes.first().is_some_and(|r| r.header.kind == RouteType::Local) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(NetError::Netlink { what: format!("adding {addr}"), message: "its local route never appeared".into() });
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Removes `addr/prefix` from `link`. `Ok(false)`: it was not there.
pub fn del_address(link: &str, addr: IpAddr, prefix: u8) -> Result<bool, NetError> {
    let Some(msg) = find_address(link, addr, prefix)? else {
        return Ok(false);
    };
    netlink(
        &format!("removing {addr}/{prefix} from {link}"),
        |h| async move { h.address().del(msg).execute().await },
    )?;
    Ok(true)
}

/// The first (primary) IPv4 address of `link`.
pub fn primary_ipv4(link: &str) -> Result<Option<Ipv4Addr>, NetError> {
    let index = index_of(link)?;
    Ok(addresses()?.into_iter().find_map(|a| match a.addr {
        IpAddr::V4(v4) if a.index == index => Some(v4),
        _ => None,
    }))
}

/// The first global IPv6 address of `link` (link-local ones, fe80::/10, cannot source a tunnel).
pub fn primary_ipv6(link: &str) -> Result<Option<std::net::Ipv6Addr>, NetError> {
    let index = index_of(link)?;
    Ok(addresses()?.into_iter().find_map(|a| match a.addr {
        IpAddr::V6(v6) if a.index == index && v6.segments()[0] & 0xffc0 != 0xfe80 => Some(v6),
        _ => None,
    }))
}

/// Adds a route to `dest/prefix`, through `via` and/or out of `dev`; IPv4
/// or IPv6, as `dest` and `via` are.
pub fn add_route<A: Into<IpAddr> + Copy>(
    dest: A,
    prefix: u8,
    via: Option<A>,
    dev: Option<&str>,
) -> Result<(), NetError> {
    let dest: IpAddr = dest.into();
    // rtnetlink does not export its error type: only its text is kept.
    let invalid = |e: &dyn std::fmt::Display| NetError::Netlink {
        what: format!("adding route {dest}/{prefix}"),
        message: e.to_string(),
    };
    let mut builder =
        RouteMessageBuilder::<IpAddr>::new().destination_prefix(dest, prefix).map_err(|e| invalid(&e))?;
    if let Some(gw) = via {
        builder = builder.gateway(gw.into()).map_err(|e| invalid(&e))?;
    }
    if let Some(dev) = dev {
        builder = builder.output_interface(index_of(dev)?);
    }
    let msg = builder.build();
    netlink(&format!("adding route {dest}/{prefix}"), |h| async move {
        h.route().add(msg).execute().await
    })
}

/// Adds (or replaces) a permanent neighbour entry.
pub fn add_neighbour(link: &str, addr: Ipv4Addr, mac: [u8; 6]) -> Result<(), NetError> {
    let index = index_of(link)?;
    netlink(
        &format!("adding neighbour {addr} on {link}"),
        |h| async move {
            h.neighbours()
                .add(index, IpAddr::V4(addr))
                .link_layer_address(&mac)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
        },
    )
}

/// Asks the kernel to keep the neighbour entry for `addr` resolved by itself
/// (a "managed" entry, Linux 5.16+), so the XDP path finds next-hop MACs warm.
/// An entry that already exists (a static one, say) is left as it is.
pub fn keep_neighbour_resolved(link: &str, addr: Ipv4Addr) -> Result<(), NetError> {
    let index = index_of(link)?;
    netlink(&format!("adding managed neighbour {addr} on {link}"), |h| async move {
        let mut req = h.neighbours().add(index, IpAddr::V4(addr)).state(NeighbourState::None);
        req.message_mut().attributes.push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        match req.execute().await {
            Err(e) if errno_is(&e, libc::EEXIST) => Ok(()),
            other => other,
        }
    })
}

/// Keeps the next hop toward `dest` resolved: the gateway of its route, or
/// `dest` itself when it is on-link. Returns the route it followed.
pub fn keep_route_resolved(dest: Ipv4Addr) -> Result<RouteInfo, NetError> {
    let route = route_get(dest)?;
    keep_neighbour_resolved(&route.dev, route.gateway.unwrap_or(dest))?;
    Ok(route)
}

/// The device the kernel would send an IPv6 packet to `dest` out of.
pub fn route_dev6(dest: Ipv6Addr) -> Result<String, NetError> {
    let msg = RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(dest, 128).build();
    let what = format!("looking up the route to {dest}");
    let routes: Vec<_> = netlink(&what, |h| async move { h.route().get(msg).execute().try_collect().await })?;
    let index = routes
        .first()
        .and_then(|r| r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        }))
        .ok_or_else(|| NetError::Netlink { what: what.clone(), message: "no route".into() })?;
    Ok(links()?.into_iter().find(|l| l.index == index).map(|l| l.name).unwrap_or_default())
}

/// How the kernel would route a packet to `dest`.
pub fn route_get(dest: Ipv4Addr) -> Result<RouteInfo, NetError> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dest, 32)
        .build();
    let what = format!("looking up the route to {dest}");
    let routes: Vec<_> = netlink(&what, |h| async move {
        h.route().get(msg).execute().try_collect().await
    })?;
    let route = routes.first().ok_or_else(|| NetError::Netlink {
        what: what.clone(),
        message: "no route".into(),
    })?;
    let mut info = RouteInfo {
        dev: String::new(),
        index: 0,
        gateway: None,
        prefsrc: None,
    };
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Oif(i) => info.index = *i,
            RouteAttribute::Gateway(RouteAddress::Inet(gw)) => info.gateway = Some(*gw),
            RouteAttribute::PrefSource(RouteAddress::Inet(src)) => info.prefsrc = Some(*src),
            _ => {}
        }
    }
    info.dev = links()?
        .into_iter()
        .find(|l| l.index == info.index)
        .map(|l| l.name)
        .unwrap_or_default();
    Ok(info)
}

/// The host routes of either family out of `dev` in routing table `table`.
pub fn table_routes(table: u32, dev: &str) -> Result<Vec<(IpAddr, u8)>, NetError> {
    let index = index_of(dev)?;
    let mut found = Vec::new();
    for msg in [RouteMessageBuilder::<Ipv4Addr>::new().build(), RouteMessageBuilder::<Ipv6Addr>::new().build()] {
        let routes: Vec<_> = netlink(&format!("listing routes of table {table}"), |h| async move {
            h.route().get(msg).execute().try_collect().await
        })?;
        for route in &routes {
            let mut in_table = u32::from(route.header.table);
            let (mut dest, mut oif) = (None, None);
            for attr in &route.attributes {
                match attr {
                    RouteAttribute::Table(t) => in_table = *t,
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dest = Some(IpAddr::V4(*d)),
                    RouteAttribute::Destination(RouteAddress::Inet6(d)) => dest = Some(IpAddr::V6(*d)),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            if in_table == table && oif == Some(index) {
                if let Some(dest) = dest {
                    found.push((dest, route.header.destination_prefix_length));
                }
            }
        }
    }
    Ok(found)
}

fn table_route(
    dest: IpAddr,
    prefix: u8,
    dev_index: u32,
    table: u32,
) -> Result<netlink_packet_route::route::RouteMessage, NetError> {
    let builder = RouteMessageBuilder::<IpAddr>::new().destination_prefix(dest, prefix).map_err(|e| {
        NetError::Netlink { what: format!("a route to {dest}/{prefix} in table {table}"), message: e.to_string() }
    })?;
    Ok(builder
        .output_interface(dev_index)
        .table_id(table)
        .scope(netlink_packet_route::route::RouteScope::Link)
        .build())
}

/// Adds (or replaces) the route `dest/prefix` out of `dev` in routing table `table`.
pub fn add_table_route(dest: IpAddr, prefix: u8, dev: &str, table: u32) -> Result<(), NetError> {
    let msg = table_route(dest, prefix, index_of(dev)?, table)?;
    netlink(&format!("adding route {dest}/{prefix} dev {dev} table {table}"), |h| async move {
        h.route().add(msg).replace().execute().await
    })
}

/// Removes the route `dest/prefix` out of `dev` from routing table `table`; true if it was there.
pub fn del_table_route(dest: IpAddr, prefix: u8, dev: &str, table: u32) -> Result<bool, NetError> {
    let msg = table_route(dest, prefix, index_of(dev)?, table)?;
    netlink(&format!("removing route {dest}/{prefix} dev {dev} table {table}"), |h| async move {
        match h.route().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno_is(&e, libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    })
}

/// Whether interface `name` is up with a carrier and has an XDP program attached.
pub fn xdp_forwarding(name: &str) -> Result<bool, NetError> {
    use netlink_packet_route::link::{LinkXdp, XdpAttached};
    let owned = name.to_string();
    let msg = netlink(&format!("reading interface {name}"), |h| async move {
        h.link().get().match_name(owned).execute().try_next().await
    })?
    .ok_or_else(|| NetError::NoSuchLink { name: name.into() })?;
    let running = msg.header.flags.contains(LinkFlags::Up) && msg.header.flags.contains(LinkFlags::LowerUp);
    let xdp = msg.attributes.iter().any(|a| match a {
        LinkAttribute::Xdp(xdp) => xdp.iter().any(|x| match x {
            LinkXdp::Attached(mode) => *mode != XdpAttached::None,
            LinkXdp::ProgId(id) => *id != 0,
            _ => false,
        }),
        _ => false,
    });
    Ok(running && xdp)
}

/// An interface's packet and byte counters.
pub fn link_stats(name: &str) -> Result<LinkStats, NetError> {
    let owned = name.to_string();
    let msg = netlink(&format!("reading counters of {name}"), |h| async move {
        h.link().get().match_name(owned).execute().try_next().await
    })?
    .ok_or_else(|| NetError::NoSuchLink { name: name.into() })?;
    Ok(msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Stats64(s) => Some(LinkStats {
                rx_packets: s.rx_packets,
                tx_packets: s.tx_packets,
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
            }),
            _ => None,
        })
        .unwrap_or_default())
}

/// An ethtool offload setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// `ethtool -K NAME tx`: on veth, XDP leaves partial checksums unfinished,
    /// so test clients turn it off.
    TxChecksum,
    /// `ethtool -K NAME gro`: a veth accepts XDP_TX/redirected frames from its
    /// peer only with GRO on (or an XDP program attached).
    Gro,
}

/// Turns an offload on or off, like `ethtool -K NAME tx|gro on|off`.
pub fn set_offload(name: &str, offload: Offload, on: bool) -> Result<(), NetError> {
    let (cmd, label) = match offload {
        Offload::TxChecksum => (0x17u32, "tx"), // ETHTOOL_STXCSUM
        Offload::Gro => (0x2cu32, "gro"),       // ETHTOOL_SGRO
    };
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct Ifreq {
        name: [libc::c_char; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    if name.len() >= libc::IFNAMSIZ {
        return Err(NetError::NoSuchLink { name: name.into() });
    }
    let mut value = EthtoolValue {
        cmd,
        data: on as u32,
    };
    let mut req = Ifreq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let what = format!(
        "ethtool -K {name} {label} {}",
        if on { "on" } else { "off" }
    );
    // SAFETY: plain socket + ioctl with a correctly laid out ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(NetError::io(what, std::io::Error::last_os_error()));
        }
        let rc = libc::ioctl(fd, libc::SIOCETHTOOL, &mut req);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(NetError::io(what, err));
        }
    }
    Ok(())
}
