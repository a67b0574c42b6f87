//! Frame builders shared by the packet tests and the differential fuzzer's
//! checks: client frames (TCP, UDP, sized, with options, fragments, echo
//! requests, ICMP errors quoting a VIP flow) and what the balancer must make
//! of them (IPIP, Fragmentation Needed), all built with etherparse,
//! independently of the C code.

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{
    Icmpv4Type, IpDscp, IpEcn, IpHeaders, IpNumber, Ipv4Header, Ipv4Options, PacketBuilder, VlanId,
};

use super::{CLIENT, CLIENT_MAC, VIP};

/// A router on the client's side that reports errors about the backends' replies.
pub const CLIENT_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);

/// A client TCP segment of an established connection (ACK, small payload) to
/// `dst`, from the client's MAC to `lb_mac`.
pub fn tcp_frame(lb_mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    tcp_segment(lb_mac, src, dst, false, Some(2000), b"hello")
}

/// A client SYN opening a connection to `dst`.
pub fn syn_frame(lb_mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    tcp_segment(lb_mac, src, dst, true, None, &[])
}

/// A TCP segment from `src` to `dst`: SYN as given, ACK with `ack`'s number.
pub fn tcp_segment(
    lb_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    syn: bool,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let mut tcp = PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv4(src.ip().octets(), dst.ip().octets(), 61)
        .tcp(src.port(), dst.port(), 1000, 64_000);
    if syn {
        tcp = tcp.syn();
    }
    if let Some(number) = ack {
        tcp = tcp.ack(number);
    }
    let mut frame = Vec::new();
    tcp.write_to_vec(&mut frame, payload).unwrap();
    frame
}

/// A client UDP datagram to `dst`.
pub fn udp_frame(lb_mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv4(src.ip().octets(), dst.ip().octets(), 61)
        .udp(src.port(), dst.port())
        .write_to_vec(&mut frame, b"query")
        .unwrap();
    frame
}

/// An IPv4 header with 8 bytes of options, TOS (DSCP 46, ECN 1) and DF set.
pub fn header_with_options(dst: [u8; 4]) -> Ipv4Header {
    let mut ip = Ipv4Header::new(0, 61, IpNumber::TCP, CLIENT.octets(), dst).unwrap();
    ip.options = Ipv4Options::try_from(&[1u8, 1, 1, 1, 1, 1, 1, 0][..]).unwrap(); // NOPs then end-of-options
    ip.dscp = IpDscp::try_new(46).unwrap();
    ip.ecn = IpEcn::ONE;
    ip.dont_fragment = true;
    ip.identification = 0x1234;
    ip
}

pub fn options_frame(lb_mac: [u8; 6], vlan: Option<u16>) -> Vec<u8> {
    let ip = IpHeaders::Ipv4(header_with_options(VIP.octets()), Default::default());
    let mut frame = Vec::new();
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, lb_mac);
    match vlan {
        None => eth
            .ip(ip)
            .tcp(40000, 80, 1, 1000)
            .syn()
            .write_to_vec(&mut frame, b"with options"),
        Some(id) => eth
            .single_vlan(VlanId::try_new(id).unwrap())
            .ip(ip)
            .tcp(40000, 80, 1, 1000)
            .syn()
            .write_to_vec(&mut frame, b"with options"),
    }
    .unwrap();
    frame
}

/// A TCP segment from `client` to `vip` whose IPv4 packet is `ip_len` bytes,
/// with DF as given; `vlan` tags it.
pub fn sized_tcp_frame(
    lb_mac: [u8; 6],
    client: SocketAddrV4,
    vip: SocketAddrV4,
    ip_len: usize,
    df: bool,
    vlan: Option<u16>,
) -> Vec<u8> {
    let mut ip = Ipv4Header::new(
        0,
        61,
        IpNumber::TCP,
        client.ip().octets(),
        vip.ip().octets(),
    )
    .unwrap();
    ip.dont_fragment = df;
    ip.identification = 0x5151;
    ip.dscp = IpDscp::try_new(10).unwrap();
    let payload: Vec<u8> = (0..ip_len - 40).map(|i| i as u8).collect();
    let mut frame = Vec::new();
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, lb_mac);
    let ip = IpHeaders::Ipv4(ip, Default::default());
    match vlan {
        None => eth
            .ip(ip)
            .tcp(client.port(), vip.port(), 7777, 64_000)
            .ack(1)
            .write_to_vec(&mut frame, &payload),
        Some(id) => eth
            .single_vlan(VlanId::try_new(id).unwrap())
            .ip(ip)
            .tcp(client.port(), vip.port(), 7777, 64_000)
            .ack(1)
            .write_to_vec(&mut frame, &payload),
    }
    .unwrap();
    frame
}

/// The Fragmentation Needed that `frame` (IPv4 at `l2_len`) must get back:
/// MACs swapped, the tag (if any) kept, from the packet's destination to its
/// source, TOS 0xc0, id 0, DF, TTL 64, quoting its IPv4 header and 8 bytes.
pub fn expected_frag_needed(frame: &[u8], l2_len: usize, next_hop_mtu: u16) -> Vec<u8> {
    let (original, _) = Ipv4Header::from_slice(&frame[l2_len..]).unwrap();
    let quoted = &frame[l2_len..l2_len + original.header_len() + 8];
    let mut ip =
        Ipv4Header::new(0, 64, IpNumber::ICMP, original.destination, original.source).unwrap();
    ip.dscp = IpDscp::try_new(0xc0 >> 2).unwrap();
    ip.ecn = IpEcn::ZERO;
    ip.dont_fragment = true;
    ip.identification = 0;
    let mut reply = Vec::new();
    let src: [u8; 6] = frame[0..6].try_into().unwrap();
    let dst: [u8; 6] = frame[6..12].try_into().unwrap();
    let icmp = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu,
    });
    let eth = PacketBuilder::ethernet2(src, dst);
    let ip = IpHeaders::Ipv4(ip, Default::default());
    if l2_len == 18 {
        let tci = u16::from_be_bytes([frame[14], frame[15]]);
        eth.single_vlan(VlanId::try_new(tci & 0x0fff).unwrap())
            .ip(ip)
            .icmpv4(icmp)
            .write_to_vec(&mut reply, quoted)
    } else {
        eth.ip(ip).icmpv4(icmp).write_to_vec(&mut reply, quoted)
    }
    .unwrap();
    reply
}

/// A router's ICMP error to the VIP, quoting the start of a backend's reply
/// from `vip` to `client` (a 1500-byte TCP segment with DF).
pub fn icmp_error_frame(
    lb_mac: [u8; 6],
    kind: Icmpv4Type,
    client: SocketAddrV4,
    vip: SocketAddrV4,
) -> Vec<u8> {
    let mut reply = Ipv4Header::new(
        1480,
        63,
        IpNumber::TCP,
        vip.ip().octets(),
        client.ip().octets(),
    )
    .unwrap();
    reply.header_checksum = reply.calc_header_checksum();
    let mut quoted = reply.to_bytes().to_vec();
    quoted.extend(vip.port().to_be_bytes());
    quoted.extend(client.port().to_be_bytes());
    quoted.extend(0x1234_5678u32.to_be_bytes()); // sequence number
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv4(CLIENT_ROUTER.octets(), vip.ip().octets(), 60)
        .icmpv4(kind)
        .write_to_vec(&mut frame, &quoted)
        .unwrap();
    frame
}

pub fn frag_needed_type(next_hop_mtu: u16) -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu })
}

pub fn echo_request(lb_mac: [u8; 6], dst: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv4(CLIENT.octets(), dst.octets(), 57)
        .icmpv4_echo_request(0x4242, 7)
        .write_to_vec(&mut frame, b"are you there, VIP?")
        .unwrap();
    frame
}

/// One fragment of a UDP datagram `id` from the client to the VIP: the first
/// one (offset 0) carries the UDP header, later ones `payload` only.
pub fn fragment(lb_mac: [u8; 6], id: u16, offset_8: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    fragment_to(lb_mac, VIP, IpNumber::UDP, id, offset_8, more, payload)
}

/// One fragment (no DF) of datagram `id` of `protocol` from the client to `dst`.
pub fn fragment_to(
    lb_mac: [u8; 6],
    dst: Ipv4Addr,
    protocol: IpNumber,
    id: u16,
    offset_8: u16,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, 64, protocol, CLIENT.octets(), dst.octets()).unwrap();
    ip.dont_fragment = false;
    ip.more_fragments = more;
    ip.identification = id;
    ip.fragment_offset = offset_8.try_into().unwrap();
    ip.set_payload_len(payload.len()).unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    let mut frame = Vec::new();
    frame.extend_from_slice(&lb_mac);
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ip.to_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// What a first fragment of a UDP datagram carries: the UDP header (the
/// datagram's whole length `udp_len`, no checksum) and 8 bytes of data.
pub fn udp_first_fragment_payload(sport: u16, dport: u16, udp_len: u16) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend(sport.to_be_bytes());
    payload.extend(dport.to_be_bytes());
    payload.extend(udp_len.to_be_bytes());
    payload.extend([0, 0]);
    payload.extend(b"datagram");
    payload
}

/// What L3 DSR must make of `frame` (Ethernet + IPv4 at `l2_len`): new MACs,
/// the L2 header otherwise as it was, an outer IPv4 header built by etherparse
/// from the inner one's TOS and DF, then the inner packet byte for byte.
pub fn expected_ipip(
    frame: &[u8],
    l2_len: usize,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    tunnel_src: Ipv4Addr,
    backend: Ipv4Addr,
) -> Vec<u8> {
    expected_ipip_with_id(frame, l2_len, src_mac, dst_mac, tunnel_src, backend, 0)
}

/// As `expected_ipip`, with outer IP ID `outer_id`: 0 when the inner packet
/// has DF, else the next of the backend's IDs on this CPU (1, 2, ... on CPU 0).
/// Bytes after the inner packet's total length (a trailer) are not forwarded.
pub fn expected_ipip_with_id(
    frame: &[u8],
    l2_len: usize,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    tunnel_src: Ipv4Addr,
    backend: Ipv4Addr,
    outer_id: u16,
) -> Vec<u8> {
    let (inner_ip, _) = Ipv4Header::from_slice(&frame[l2_len..]).expect("inner IPv4 header");
    let inner_len = usize::from(inner_ip.total_len);
    let inner = &frame[l2_len..l2_len + inner_len];
    let mut outer = Ipv4Header::new(
        inner_len as u16,
        64,
        IpNumber::IPV4,
        tunnel_src.octets(),
        backend.octets(),
    )
    .unwrap();
    outer.dscp = inner_ip.dscp;
    outer.ecn = inner_ip.ecn;
    outer.dont_fragment = inner_ip.dont_fragment;
    outer.identification = outer_id;
    outer.header_checksum = outer.calc_header_checksum();

    let mut expected = Vec::new();
    expected.extend_from_slice(&dst_mac);
    expected.extend_from_slice(&src_mac);
    expected.extend_from_slice(&frame[12..l2_len]);
    expected.extend_from_slice(&outer.to_bytes());
    expected.extend_from_slice(inner);
    expected
}

/// The RFC 1071 checksum of `header` computed from scratch: 0 for a header whose checksum is right.
pub use tula_dataplane::model::internet_checksum as rfc1071;
