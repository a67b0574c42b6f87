//! bpf/decap.c under BPF_PROG_TEST_RUN: packets built here byte by byte, the
//! program's output compared byte for byte, and its counters checked.

use std::net::{Ipv4Addr, Ipv6Addr};
use tula_decap::program::{DecapCounters, DecapProgram};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const LB: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const BACKEND: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const OTHER_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 50, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const NOT_A_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);

const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 2];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header with a correct checksum.
struct Ip {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    tos: u8,
    frag: u16,
    options: Vec<u8>,
}

impl Ip {
    fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Ip {
        Ip { src, dst, proto, tos: 0, frag: 0x4000, options: Vec::new() }
    }

    fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let header_len = 20 + self.options.len();
        assert_eq!(header_len % 4, 0);
        let total = (header_len + payload.len()) as u16;
        let mut h = vec![0x40 | (header_len / 4) as u8, self.tos];
        h.extend(total.to_be_bytes());
        h.extend([0x12, 0x34]); // id
        h.extend(self.frag.to_be_bytes());
        h.extend([64, self.proto, 0, 0]);
        h.extend(self.src.octets());
        h.extend(self.dst.octets());
        h.extend(&self.options);
        let sum = checksum(&h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        h.extend(payload);
        h
    }
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = BACKEND_MAC.to_vec();
    f.extend(ROUTER_MAC);
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

fn vlan_ethernet(vlan: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = BACKEND_MAC.to_vec();
    f.extend(ROUTER_MAC);
    f.extend(0x8100u16.to_be_bytes());
    f.extend(vlan.to_be_bytes());
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

/// A client's UDP datagram to `dst`:80 (checksum 0: none, valid for IPv4).
fn client_packet(dst: Ipv4Addr) -> Vec<u8> {
    let data = b"GET / tula";
    let mut udp = 40000u16.to_be_bytes().to_vec();
    udp.extend(80u16.to_be_bytes());
    udp.extend(((8 + data.len()) as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(data);
    Ip::new(CLIENT, dst, 17).packet(&udp)
}

fn tunnelled(inner: &[u8]) -> Vec<u8> {
    ethernet(0x0800, &Ip::new(LB, BACKEND, 4).packet(inner))
}

fn program() -> DecapProgram {
    let mut p = DecapProgram::load().expect("load decap.o (run as root)");
    p.set_local_addresses(&[BACKEND]).unwrap();
    p.set_vips(&[VIP, Ipv4Addr::new(203, 0, 113, 11)]).unwrap();
    p
}

fn run(p: &DecapProgram, packet: &[u8]) -> (u32, Vec<u8>) {
    p.test_run(packet).expect("BPF_PROG_TEST_RUN")
}

#[test]
fn strips_the_outer_header_of_ipip_for_a_vip() {
    let p = program();
    let inner = client_packet(VIP);
    let (verdict, out) = run(&p, &tunnelled(&inner));
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, ethernet(0x0800, &inner), "Ethernet header kept, outer IPv4 header gone");
    let c = p.counters().unwrap();
    assert_eq!(c, DecapCounters { decapsulated_packets: 1, decapsulated_bytes: inner.len() as u64, ..Default::default() });
}

#[test]
fn strips_outer_ip_options_with_the_header() {
    let p = program();
    let inner = client_packet(VIP);
    for options in [vec![1, 1, 1, 0], vec![1; 40]] {
        let mut outer = Ip::new(LB, BACKEND, 4);
        outer.options = options.clone();
        let (verdict, out) = run(&p, &ethernet(0x0800, &outer.packet(&inner)));
        assert_eq!(verdict, XDP_PASS, "{} option bytes", options.len());
        assert_eq!(out, ethernet(0x0800, &inner), "{} option bytes", options.len());
    }
    assert_eq!(p.counters().unwrap().decapsulated_packets, 2);
}

#[test]
fn keeps_an_8021q_tag() {
    let p = program();
    let inner = client_packet(VIP);
    let frame = vlan_ethernet(100, 0x0800, &Ip::new(LB, BACKEND, 4).packet(&inner));
    let (verdict, out) = run(&p, &frame);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, vlan_ethernet(100, 0x0800, &inner));
}

#[test]
fn keeps_ethernet_padding_after_the_packet() {
    // Short frames are padded to 60 bytes; the kernel trims to the IP length.
    let p = program();
    let mut udp = 1u16.to_be_bytes().to_vec();
    udp.extend(2u16.to_be_bytes());
    udp.extend(8u16.to_be_bytes());
    udp.extend([0, 0]);
    let inner = Ip::new(CLIENT, VIP, 17).packet(&udp);
    let mut frame = tunnelled(&inner);
    frame.extend([0u8; 6]);
    let (verdict, out) = run(&p, &frame);
    assert_eq!(verdict, XDP_PASS);
    let mut expected = ethernet(0x0800, &inner);
    expected.extend([0u8; 6]);
    assert_eq!(out, expected);
}

#[test]
fn passes_everything_else_untouched() {
    let p = program();
    let arp = ethernet(0x0806, &[0u8; 28]);
    let ipv6 = ethernet(0x86dd, &[0x60; 48]);
    let plain_udp = ethernet(0x0800, &client_packet(VIP));
    let ipip_elsewhere = ethernet(0x0800, &Ip::new(LB, OTHER_HOST, 4).packet(&client_packet(VIP)));
    let vlan_arp = vlan_ethernet(7, 0x0806, &[0u8; 28]);
    let gre_to_us = ethernet(0x0800, &Ip::new(LB, BACKEND, 47).packet(&client_packet(VIP)));
    let frames = [arp, ipv6, plain_udp, ipip_elsewhere, vlan_arp, gre_to_us];
    for (i, frame) in frames.iter().enumerate() {
        let (verdict, out) = run(&p, frame);
        assert_eq!(verdict, XDP_PASS, "frame {i}");
        assert_eq!(&out, frame, "frame {i} must be untouched");
    }
    let c = p.counters().unwrap();
    assert_eq!(c, DecapCounters { passed: frames.len() as u64, ..Default::default() });
}

#[test]
fn drops_and_counts_inner_packets_not_for_a_vip() {
    let p = program();
    let (verdict, _) = run(&p, &tunnelled(&client_packet(NOT_A_VIP)));
    assert_eq!(verdict, XDP_DROP, "the backend is no open relay");
    assert_eq!(p.counters().unwrap(), DecapCounters { not_vip: 1, ..Default::default() });
}

#[test]
fn handles_truncation_at_every_length() {
    let p = program();
    let frame = tunnelled(&client_packet(VIP));
    let outer_end = 14 + 20;
    // The kernel refuses test-run frames shorter than an Ethernet header.
    for len in 14..frame.len() {
        let cut = &frame[..len];
        let (verdict, out) = run(&p, cut);
        if len < outer_end {
            // Not known to be a tunnel packet for us yet: not ours to judge.
            assert_eq!((verdict, out.as_slice()), (XDP_PASS, cut), "length {len}");
        } else {
            assert_eq!(verdict, XDP_DROP, "length {len}: IPIP for us, cut short");
        }
    }
    let c = p.counters().unwrap();
    assert_eq!(c.passed, (outer_end - 14) as u64);
    assert_eq!(c.malformed, (frame.len() - outer_end) as u64);
    assert_eq!(c.decapsulated_packets, 0);
    // The full frame still goes through.
    assert_eq!(run(&p, &frame).0, XDP_PASS);
    assert_eq!(p.counters().unwrap().decapsulated_packets, 1);
}

#[test]
fn drops_and_counts_malformed_outer_and_inner_headers() {
    let p = program();
    let good_inner = client_packet(VIP);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut bad_sum = tunnelled(&good_inner);
    bad_sum[14 + 10] ^= 0xff;
    cases.push(("outer checksum wrong", bad_sum));

    for option_words in [1usize, 10] {
        // The checksum covers the options: one flipped option byte is caught.
        let mut outer = Ip::new(LB, BACKEND, 4);
        outer.options = vec![1; option_words * 4];
        let mut frame = ethernet(0x0800, &outer.packet(&good_inner));
        frame[14 + 20 + option_words * 4 - 1] ^= 0x80;
        cases.push(("an option byte changed after the checksum", frame));
    }

    let mut short_ihl = tunnelled(&good_inner);
    short_ihl[14] = 0x44;
    cases.push(("outer IHL 4", short_ihl));

    let mut long_total = tunnelled(&good_inner);
    let total = u16::from_be_bytes([long_total[16], long_total[17]]) + 1;
    long_total[16..18].copy_from_slice(&total.to_be_bytes());
    fix_outer_checksum(&mut long_total);
    cases.push(("outer total length beyond the frame", long_total));

    let mut v6_inner = good_inner.clone();
    v6_inner[0] = 0x65;
    cases.push(("inner version 6", tunnelled(&v6_inner)));

    let mut ihl4_inner = good_inner.clone();
    ihl4_inner[0] = 0x44;
    cases.push(("inner IHL 4", tunnelled(&ihl4_inner)));

    let mut long_inner = good_inner.clone();
    let inner_total = (good_inner.len() + 1) as u16;
    long_inner[2..4].copy_from_slice(&inner_total.to_be_bytes());
    cases.push(("inner total length beyond the outer payload", tunnelled(&long_inner)));

    let mut tiny_inner = good_inner.clone();
    tiny_inner[2..4].copy_from_slice(&19u16.to_be_bytes());
    cases.push(("inner total length shorter than its header", tunnelled(&tiny_inner)));

    for (what, frame) in &cases {
        let (verdict, _) = run(&p, frame);
        assert_eq!(verdict, XDP_DROP, "{what}");
    }
    assert_eq!(p.counters().unwrap(), DecapCounters { malformed: cases.len() as u64, ..Default::default() });
}

fn fix_outer_checksum(frame: &mut [u8]) {
    let ihl = (frame[14] & 0xf) as usize * 4;
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&frame[14..14 + ihl]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn passes_outer_fragments_to_the_kernel() {
    let p = program();
    let inner = client_packet(VIP);
    for frag in [0x2000u16 /* MF */, 0x0010 /* offset 16 */] {
        let mut outer = Ip::new(LB, BACKEND, 4);
        outer.frag = frag;
        let frame = ethernet(0x0800, &outer.packet(&inner));
        let (verdict, out) = run(&p, &frame);
        assert_eq!((verdict, &out), (XDP_PASS, &frame), "frag field {frag:#x}");
    }
    assert_eq!(p.counters().unwrap(), DecapCounters { fragments: 2, ..Default::default() });
}

#[test]
fn carries_congestion_marks_inward_as_rfc6040_says() {
    let p = program();
    let ce_outer = |inner: &[u8]| {
        let mut outer = Ip::new(LB, BACKEND, 4);
        outer.tos = 0x03;
        ethernet(0x0800, &outer.packet(inner))
    };
    let with_tos = |tos: u8| {
        let mut packet = client_packet(VIP);
        packet[1] = tos;
        packet[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&packet[..20]);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
        packet
    };
    // ECT(0) inner under a CE outer: becomes CE, checksum still right.
    let (verdict, out) = run(&p, &ce_outer(&with_tos(0xb8 | 0x02)));
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, ethernet(0x0800, &with_tos(0xb8 | 0x03)));
    // Not-ECT inner under a CE outer: the mark cannot be carried, so drop.
    let (verdict, _) = run(&p, &ce_outer(&with_tos(0xb8)));
    assert_eq!(verdict, XDP_DROP);
    // ECT outer without CE changes nothing.
    let mut outer = Ip::new(LB, BACKEND, 4);
    outer.tos = 0x02;
    let (verdict, out) = run(&p, &ethernet(0x0800, &outer.packet(&with_tos(0xb8))));
    assert_eq!((verdict, out), (XDP_PASS, ethernet(0x0800, &with_tos(0xb8))));
    let c = p.counters().unwrap();
    assert_eq!((c.decapsulated_packets, c.ecn_dropped), (2, 1));
}

#[test]
fn decapsulates_only_for_configured_tunnel_addresses() {
    let mut p = program();
    let frame = ethernet(0x0800, &Ip::new(LB, OTHER_HOST, 4).packet(&client_packet(VIP)));
    assert_eq!(run(&p, &frame), (XDP_PASS, frame.clone()), "not ours yet");
    p.set_local_addresses(&[BACKEND, OTHER_HOST]).unwrap();
    assert_eq!(run(&p, &frame), (XDP_PASS, ethernet(0x0800, &client_packet(VIP))), "ours now");
    p.set_vips(&[]).unwrap();
    assert_eq!(run(&p, &frame).0, XDP_DROP, "no VIPs: nothing may be decapsulated");
}

// IPv6 outer headers: IP6IP6 (next header 41) and IPv4 in IPv6 (next header 4).

const LB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const OTHER_HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 50, 0, 0, 0, 0, 7);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 10);
const NOT_A_VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 99);

/// An IPv6 header (traffic class `tclass`, flow label 0x12345) and `payload`.
fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, tclass: u8, payload: &[u8]) -> Vec<u8> {
    let word = (6u32 << 28) | ((tclass as u32) << 20) | 0x12345;
    let mut h = word.to_be_bytes().to_vec();
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([next, 64]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h.extend(payload);
    h
}

/// A client's UDP datagram to `dst`:80 over IPv6 (the checksum is not
/// checked by the program: a fixed value).
fn client_packet6(dst: Ipv6Addr, tclass: u8) -> Vec<u8> {
    let data = b"GET / tula6";
    let mut udp = 40000u16.to_be_bytes().to_vec();
    udp.extend(80u16.to_be_bytes());
    udp.extend(((8 + data.len()) as u16).to_be_bytes());
    udp.extend([0xab, 0xcd]);
    udp.extend(data);
    ipv6(CLIENT6, dst, 17, tclass, &udp)
}

fn program6() -> DecapProgram {
    let mut p = program();
    p.set_local_addresses6(&[BACKEND6]).unwrap();
    p.set_vips6(&[VIP6]).unwrap();
    p
}

#[test]
fn strips_the_outer_header_of_ip6ip6_byte_for_byte() {
    let p = program6();
    let inner = client_packet6(VIP6, 0);
    let frame = ethernet(0x86dd, &ipv6(LB6, BACKEND6, 41, 0, &inner));
    let (verdict, out) = run(&p, &frame);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, ethernet(0x86dd, &inner), "Ethernet header kept, outer IPv6 header gone");
    assert_eq!(
        p.counters().unwrap(),
        DecapCounters { decapsulated_packets: 1, decapsulated_bytes: inner.len() as u64, ..Default::default() }
    );
    // With an 802.1Q tag and Ethernet padding after the packet.
    let mut tagged = vlan_ethernet(100, 0x86dd, &ipv6(LB6, BACKEND6, 41, 0, &inner));
    tagged.extend([0u8; 6]);
    let mut expected = vlan_ethernet(100, 0x86dd, &inner);
    expected.extend([0u8; 6]);
    assert_eq!(run(&p, &tagged), (XDP_PASS, expected));
}

#[test]
fn strips_ipv4_in_ipv6_and_sets_the_ethertype_to_ipv4() {
    let p = program6();
    let inner = client_packet(VIP);
    let (verdict, out) = run(&p, &ethernet(0x86dd, &ipv6(LB6, BACKEND6, 4, 0, &inner)));
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, ethernet(0x0800, &inner), "outer IPv6 header gone, ethertype 0x0800");
    let tagged = vlan_ethernet(7, 0x86dd, &ipv6(LB6, BACKEND6, 4, 0, &inner));
    assert_eq!(run(&p, &tagged), (XDP_PASS, vlan_ethernet(7, 0x0800, &inner)), "the tag's ethertype");
    let c = p.counters().unwrap();
    assert_eq!((c.decapsulated_packets, c.decapsulated_bytes), (2, 2 * inner.len() as u64));
}

#[test]
fn passes_ipv6_tunnel_packets_not_for_this_host_untouched() {
    let p = program6();
    let frames = [
        ethernet(0x86dd, &ipv6(LB6, OTHER_HOST6, 41, 0, &client_packet6(VIP6, 0))),
        ethernet(0x86dd, &ipv6(LB6, OTHER_HOST6, 4, 0, &client_packet(VIP))),
        // For this host but not a tunnel: plain UDP, GRE.
        ethernet(0x86dd, &client_packet6(BACKEND6, 0)),
        ethernet(0x86dd, &ipv6(LB6, BACKEND6, 47, 0, &client_packet6(VIP6, 0))),
    ];
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(run(&p, frame), (XDP_PASS, frame.clone()), "frame {i} must be untouched");
    }
    assert_eq!(p.counters().unwrap(), DecapCounters { passed: frames.len() as u64, ..Default::default() });
}

#[test]
fn passes_ipv6_with_an_extension_header_before_the_tunnel_untouched() {
    let p = program6();
    let inner = client_packet6(VIP6, 0);
    let mut frames = Vec::new();
    // Destination options (60), hop-by-hop (0): 8 bytes of PadN, next header 41.
    for ext in [60u8, 0] {
        let mut payload = vec![41, 0, 1, 4, 0, 0, 0, 0];
        payload.extend(&inner);
        frames.push(ethernet(0x86dd, &ipv6(LB6, BACKEND6, ext, 0, &payload)));
    }
    // A fragment header (44) before IPv4 in IPv6.
    let mut payload = vec![4, 0, 0, 1, 0, 0, 0, 9];
    payload.extend(client_packet(VIP));
    frames.push(ethernet(0x86dd, &ipv6(LB6, BACKEND6, 44, 0, &payload)));
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(run(&p, frame), (XDP_PASS, frame.clone()), "frame {i} must be untouched");
    }
    assert_eq!(p.counters().unwrap(), DecapCounters { passed: frames.len() as u64, ..Default::default() });
}

#[test]
fn drops_ipv6_tunnel_packets_for_no_vip_or_malformed() {
    let p = program6();
    let cases = [
        ("IP6IP6 to a non-VIP", ethernet(0x86dd, &ipv6(LB6, BACKEND6, 41, 0, &client_packet6(NOT_A_VIP6, 0)))),
        ("IPv4 in IPv6 to a non-VIP", ethernet(0x86dd, &ipv6(LB6, BACKEND6, 4, 0, &client_packet(NOT_A_VIP)))),
        // An IPv4 VIP is no IPv6 VIP and the other way round.
        (
            "IP6IP6 to an IPv4-mapped VIP",
            ethernet(0x86dd, &ipv6(LB6, BACKEND6, 41, 0, &client_packet6(VIP.to_ipv6_mapped(), 0))),
        ),
    ];
    for (what, frame) in &cases {
        assert_eq!(run(&p, frame).0, XDP_DROP, "{what}");
    }
    assert_eq!(p.counters().unwrap(), DecapCounters { not_vip: cases.len() as u64, ..Default::default() });

    let inner = client_packet6(VIP6, 0);
    let good = ethernet(0x86dd, &ipv6(LB6, BACKEND6, 41, 0, &inner));
    let mut long_outer = good.clone();
    long_outer[18..20].copy_from_slice(&((inner.len() + 1) as u16).to_be_bytes());
    let mut long_inner = good.clone();
    long_inner[14 + 40 + 4..14 + 40 + 6].copy_from_slice(&((inner.len() - 40 + 1) as u16).to_be_bytes());
    let mut v4_inner = good.clone();
    v4_inner[14 + 40] = 0x45;
    let v6_in_v4_slot = ethernet(0x86dd, &ipv6(LB6, BACKEND6, 4, 0, &inner));
    let malformed = [long_outer, long_inner, v4_inner, v6_in_v4_slot];
    for (i, frame) in malformed.iter().enumerate() {
        assert_eq!(run(&p, frame).0, XDP_DROP, "malformed frame {i}");
    }
    // Cut short anywhere after the outer header: dropped; before it: passed.
    for len in 14..good.len() {
        let expected = if len < 14 + 40 { XDP_PASS } else { XDP_DROP };
        assert_eq!(run(&p, &good[..len]).0, expected, "length {len}");
    }
    assert_eq!(p.counters().unwrap().malformed, (malformed.len() + good.len() - 14 - 40) as u64);
}

#[test]
fn carries_congestion_marks_inward_for_ipv6_outer_headers() {
    let p = program6();
    // ECT(0) inner IPv6 under a CE outer: becomes CE.
    let frame = ethernet(0x86dd, &ipv6(LB6, BACKEND6, 41, 0x03, &client_packet6(VIP6, 0xb8 | 0x02)));
    assert_eq!(run(&p, &frame), (XDP_PASS, ethernet(0x86dd, &client_packet6(VIP6, 0xb8 | 0x03))));
    // Not-ECT inner under a CE outer: dropped, for IPv6 and IPv4 inner packets.
    let frame = ethernet(0x86dd, &ipv6(LB6, BACKEND6, 41, 0x03, &client_packet6(VIP6, 0xb8)));
    assert_eq!(run(&p, &frame).0, XDP_DROP);
    let frame = ethernet(0x86dd, &ipv6(LB6, BACKEND6, 4, 0x03, &client_packet(VIP)));
    assert_eq!(run(&p, &frame).0, XDP_DROP);
    let c = p.counters().unwrap();
    assert_eq!((c.decapsulated_packets, c.ecn_dropped), (1, 2));
}
