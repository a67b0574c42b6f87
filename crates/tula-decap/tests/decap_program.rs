//! bpf/decap.c under BPF_PROG_TEST_RUN: packets built here byte by byte, the
//! program's output compared byte for byte, and its counters checked.

use std::net::Ipv4Addr;
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
