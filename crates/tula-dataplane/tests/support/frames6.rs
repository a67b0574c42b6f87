//! IPv6 frame builders for the packet tests, as frames.rs for IPv4: client
//! frames (TCP, UDP, sized, with extension headers, fragments, echo
//! requests, ICMPv6 errors quoting a VIP flow) and what the balancer must
//! make of them (IP6IP6 and IPv4-in-IPv6, Packet Too Big, echo replies),
//! built with etherparse, independently of the C code.

use std::net::{Ipv6Addr, SocketAddrV6};

use etherparse::{IcmpEchoHeader, Icmpv6Type, IpNumber, Ipv6FlowLabel, Ipv6Header, PacketBuilder};

use super::CLIENT_MAC;

pub const LB_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const NEXT_HOP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
pub const L2_BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 7);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x10);
/// A router on the client's side that reports errors about the backends' replies.
pub const CLIENT_ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 1);

/// Routed IPv6 backend `n` in 2001:db8:100::/64.
pub fn routed_backend6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, n)
}

pub fn client6(port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(CLIENT6, port, 0, 0)
}

pub fn vip6(port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(VIP6, port, 0, 0)
}

/// A client TCP segment of an established connection (ACK, a small payload).
pub fn tcp6_frame(lb_mac: [u8; 6], src: SocketAddrV6, dst: SocketAddrV6) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv6(src.ip().octets(), dst.ip().octets(), 61)
        .tcp(src.port(), dst.port(), 1000, 64_000)
        .ack(2000)
        .write_to_vec(&mut frame, b"hello")
        .unwrap();
    frame
}

/// A client SYN opening a connection.
pub fn syn6_frame(lb_mac: [u8; 6], src: SocketAddrV6, dst: SocketAddrV6) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv6(src.ip().octets(), dst.ip().octets(), 61)
        .tcp(src.port(), dst.port(), 1000, 64_000)
        .syn()
        .write_to_vec(&mut frame, &[])
        .unwrap();
    frame
}

/// A client UDP datagram.
pub fn udp6_frame(lb_mac: [u8; 6], src: SocketAddrV6, dst: SocketAddrV6) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv6(src.ip().octets(), dst.ip().octets(), 61)
        .udp(src.port(), dst.port())
        .write_to_vec(&mut frame, b"query")
        .unwrap();
    frame
}

/// A TCP segment whose IPv6 packet is `ip_len` bytes, traffic class 0x28.
pub fn sized_tcp6_frame(
    lb_mac: [u8; 6],
    src: SocketAddrV6,
    dst: SocketAddrV6,
    ip_len: usize,
) -> Vec<u8> {
    let payload: Vec<u8> = (0..ip_len - 60).map(|i| i as u8).collect();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ip(etherparse::IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: 0x28,
                flow_label: Ipv6FlowLabel::try_new(0x12345).unwrap(),
                payload_length: 0,
                next_header: IpNumber::TCP,
                hop_limit: 61,
                source: src.ip().octets(),
                destination: dst.ip().octets(),
            },
            Default::default(),
        ))
        .tcp(src.port(), dst.port(), 7777, 64_000)
        .ack(1)
        .write_to_vec(&mut frame, &payload)
        .unwrap();
    frame
}

/// `frame` (an untagged IPv6 frame) with extension headers inserted between
/// its IPv6 header and what followed it: each (next-header value it is
/// announced by, its bytes, whose first byte is overwritten with the chain).
pub fn with_extensions(frame: &[u8], extensions: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let (head, rest) = frame.split_at(14 + 40);
    let mut out = head.to_vec();
    let mut upper = out[14 + 6];
    let mut chain = Vec::new();
    for (kind, bytes) in extensions.iter().rev() {
        let mut bytes = bytes.clone();
        bytes[0] = upper;
        upper = *kind;
        chain.splice(0..0, bytes);
    }
    out[14 + 6] = upper;
    let payload_len = u16::from_be_bytes([out[18], out[19]]) as usize + chain.len();
    out[18..20].copy_from_slice(&(payload_len as u16).to_be_bytes());
    out.extend(chain);
    out.extend_from_slice(rest);
    out
}

/// Eight bytes of hop-by-hop or destination options: a PadN filling them.
pub fn options_header() -> Vec<u8> {
    vec![0, 0, 1, 4, 0, 0, 0, 0]
}

/// A type 0 routing header with no segments left, 8 bytes.
pub fn routing_header() -> Vec<u8> {
    vec![0, 0, 0, 0, 0, 0, 0, 0]
}

/// A fragment header (8 bytes): offset in bytes (a multiple of 8), more fragments, id.
pub fn fragment_header(offset: u16, more: bool, id: u32) -> Vec<u8> {
    let mut header = vec![0, 0];
    header.extend((offset | u16::from(more)).to_be_bytes());
    header.extend(id.to_be_bytes());
    header
}

/// A later fragment (offset > 0) of datagram `id` from the client to `vip`,
/// whose fragment header announces `proto`, carrying `payload`.
pub fn later_fragment6(
    lb_mac: [u8; 6],
    vip: Ipv6Addr,
    proto: u8,
    id: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend(lb_mac);
    frame.extend(CLIENT_MAC);
    frame.extend([0x86, 0xdd]);
    let header = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: (8 + payload.len()) as u16,
        next_header: IpNumber::IPV6_FRAGMENTATION_HEADER,
        hop_limit: 61,
        source: CLIENT6.octets(),
        destination: vip.octets(),
    };
    header.write(&mut frame).unwrap();
    let mut fragment = fragment_header(1448, true, id);
    fragment[0] = proto;
    frame.extend(fragment);
    frame.extend_from_slice(payload);
    frame
}

/// An echo request to `dst` from `src`.
pub fn echo6_request(lb_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv6(src.octets(), dst.octets(), 61)
        .icmpv6_echo_request(0x4242, 7)
        .write_to_vec(&mut frame, b"ping6")
        .unwrap();
    frame
}

/// The reply `request` (an untagged echo request) must get: MACs and
/// addresses swapped, hop limit 64, type 129, the same id, sequence and data.
pub fn expected_echo6_reply(request: &[u8]) -> Vec<u8> {
    let src: [u8; 16] = request[22..38].try_into().unwrap();
    let dst: [u8; 16] = request[38..54].try_into().unwrap();
    let eth_dst: [u8; 6] = request[6..12].try_into().unwrap();
    let eth_src: [u8; 6] = request[0..6].try_into().unwrap();
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(eth_src, eth_dst)
        .ipv6(dst, src, 64)
        .icmpv6(Icmpv6Type::EchoReply(IcmpEchoHeader { id: 0x4242, seq: 7 }))
        .write_to_vec(&mut reply, &request[14 + 40 + 8..])
        .unwrap();
    reply
}

/// The Packet Too Big that `frame` (untagged IPv6) must get back: MACs
/// swapped, from its destination to its source, hop limit 64, reporting
/// `mtu` and quoting the first 1232 bytes of the packet (1280 in all).
pub fn expected_packet_too_big(frame: &[u8], mtu: u32) -> Vec<u8> {
    let src: [u8; 16] = frame[22..38].try_into().unwrap();
    let dst: [u8; 16] = frame[38..54].try_into().unwrap();
    let eth_dst: [u8; 6] = frame[6..12].try_into().unwrap();
    let eth_src: [u8; 6] = frame[0..6].try_into().unwrap();
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(eth_src, eth_dst)
        .ipv6(dst, src, 64)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu })
        .write_to_vec(&mut reply, &frame[14..14 + 1232])
        .unwrap();
    reply
}

/// A router's ICMPv6 error to the VIP quoting the start of a backend's reply
/// from `vip` to `client` (a 1500-byte TCP segment).
pub fn icmp6_error_frame(
    lb_mac: [u8; 6],
    kind: Icmpv6Type,
    client: SocketAddrV6,
    vip: SocketAddrV6,
) -> Vec<u8> {
    let reply = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: 1460,
        next_header: IpNumber::TCP,
        hop_limit: 63,
        source: vip.ip().octets(),
        destination: client.ip().octets(),
    };
    let mut quoted = reply.to_bytes().to_vec();
    quoted.extend(vip.port().to_be_bytes());
    quoted.extend(client.port().to_be_bytes());
    quoted.extend(0x1234_5678u32.to_be_bytes());
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv6(CLIENT_ROUTER6.octets(), vip.ip().octets(), 60)
        .icmpv6(kind)
        .write_to_vec(&mut frame, &quoted)
        .unwrap();
    frame
}

/// `frame` (untagged, its IP packet at 14) in an outer IPv6 header from
/// `tunnel_src` to `backend` with next header `nexthdr`, traffic class
/// `tclass`, flow label `label` and hop limit 64, between `src_mac` and `dst_mac`.
#[allow(clippy::too_many_arguments)]
pub fn expected_ip6_tunnel(
    frame: &[u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    tunnel_src: Ipv6Addr,
    backend: Ipv6Addr,
    nexthdr: IpNumber,
    tclass: u8,
    label: u32,
) -> Vec<u8> {
    let inner = &frame[14..];
    let mut out = Vec::new();
    out.extend(dst_mac);
    out.extend(src_mac);
    out.extend([0x86, 0xdd]);
    Ipv6Header {
        traffic_class: tclass,
        flow_label: Ipv6FlowLabel::try_new(label).unwrap(),
        payload_length: inner.len() as u16,
        next_header: nexthdr,
        hop_limit: 64,
        source: tunnel_src.octets(),
        destination: backend.octets(),
    }
    .write(&mut out)
    .unwrap();
    out.extend_from_slice(inner);
    out
}
