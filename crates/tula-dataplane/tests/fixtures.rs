//! The fixture table: one row per class of frame -- what goes in (built by
//! the shared builders in support/frames.rs), the verdict, what comes out
//! and the counters that move -- run through the balancer one after the
//! other in one namespace. docs/DATAPLANE.md's "rule for each class of
//! frame" in executable form; the differential fuzzer covers the rest.

mod support;

use std::net::Ipv4Addr;

use etherparse::IpNumber;
use support::*;
use tula_dataplane::{Counter, Dsr, Scheduler, XdpAction};

fn ipip_via_next_hop(f: &Fixture, frame: &[u8]) -> Vec<u8> {
    expected_ipip(frame, 14, f.lb_mac, NEXT_HOP_MAC, LB_ADDR, routed_backend(3))
}

/// Sets the IPv4 total length of an untagged frame (checksum left as it was: not ours to check).
fn with_tot_len(mut frame: Vec<u8>, tot_len: u16) -> Vec<u8> {
    frame[16..18].copy_from_slice(&tot_len.to_be_bytes());
    frame
}

const CASES: &[Case] = &[
    Case {
        what: "TCP to an L3 VIP: IPIP to the routed backend",
        frame: |f| tcp_frame(f.lb_mac, client(41001), vip(80)),
        verdict: XdpAction::Tx,
        output: Some(ipip_via_next_hop),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "UDP to an all-ports L3 VIP",
        frame: |f| udp_frame(f.lb_mac, client(41002), vip(5353)),
        verdict: XdpAction::Tx,
        output: Some(ipip_via_next_hop),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "TCP to an L2 VIP: the MAC addresses rewritten, nothing else",
        frame: |f| tcp_frame(f.lb_mac, client(41003), vip(443)),
        verdict: XdpAction::Tx,
        output: Some(|f, frame| {
            let mut out = frame.to_vec();
            out[0..6].copy_from_slice(&L2_BACKEND_MAC);
            out[6..12].copy_from_slice(&f.lb_mac);
            out
        }),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "a padded minimum-size frame: the padding is not forwarded",
        frame: |f| {
            let mut frame = tcp_segment(f.lb_mac, client(41004), vip(80), false, Some(1), &[]);
            frame.resize(60, 0);
            frame
        },
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ipip_via_next_hop(f, &frame[..54])),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "TCP to a VIP address on a port no VIP has",
        frame: |f| tcp_frame(f.lb_mac, client(41005), vip(22)),
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::NotVip],
    },
    Case {
        what: "an IPv4 packet under the IPv6 ethertype: version 4 is no IPv6 header",
        frame: |f| {
            let mut frame = tcp_frame(f.lb_mac, client(41006), vip(80));
            frame[12..14].copy_from_slice(&[0x86, 0xdd]);
            frame
        },
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::Malformed],
    },
    Case {
        what: "ARP: neither IPv4 nor IPv6",
        frame: |f| {
            let mut frame = tcp_frame(f.lb_mac, client(41012), vip(80));
            frame[12..14].copy_from_slice(&[0x08, 0x06]);
            frame
        },
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::NotIpv4],
    },
    Case {
        what: "IHL 4",
        frame: |f| {
            let mut frame = tcp_frame(f.lb_mac, client(41007), vip(80));
            frame[14] = 0x44;
            frame
        },
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::Malformed],
    },
    Case {
        what: "a total length below the header, to an all-ports VIP",
        frame: |f| with_tot_len(udp_frame(f.lb_mac, client(41008), vip(53)), 19),
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::Malformed],
    },
    Case {
        what: "a truncated datagram to a per-port VIP",
        frame: |f| {
            let mut frame = tcp_frame(f.lb_mac, client(41009), vip(80));
            frame.pop();
            frame
        },
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::Malformed],
    },
    Case {
        what: "an echo request from 127.0.0.1: never answered",
        frame: |f| {
            let mut frame = echo_request(f.lb_mac, VIP);
            frame[26..30].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
            frame
        },
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::IcmpForbidden],
    },
    Case {
        what: "DF, one byte over the tunnel MTU: Fragmentation Needed",
        frame: |f| sized_tcp_frame(f.lb_mac, client(41010), vip(80), 1481, true, None),
        verdict: XdpAction::Tx,
        output: Some(|_, frame| expected_frag_needed(frame, 14, 1480)),
        counters: &[Counter::Tx, Counter::LruMiss, Counter::FragNeeded, Counter::IcmpFragNeeded],
    },
    Case {
        what: "the same sent to the Ethernet broadcast address: no ICMP",
        frame: |f| {
            let mut frame = sized_tcp_frame(f.lb_mac, client(41011), vip(80), 1481, true, None);
            frame[0..6].fill(0xff);
            frame
        },
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::LruMiss, Counter::FragNeeded, Counter::IcmpForbidden],
    },
    Case {
        what: "a later TCP fragment, no all-ports TCP VIP: the host's",
        frame: |f| fragment_to(f.lb_mac, VIP, IpNumber::TCP, 0x4101, 2, false, b"rest of it"),
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::FragPassed],
    },
    Case {
        what: "a later UDP fragment whose first never came, all-ports UDP VIP: an orphan",
        frame: |f| fragment(f.lb_mac, 0x4102, 2, false, b"rest of it"),
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::FragOrphan],
    },
];

#[test]
fn every_class_of_frame_gets_its_verdict_bytes_and_counters() {
    in_lab("fixtures", |f| {
        f.add_backend(3, routed_backend(3));
        f.add_backend(4, L2_BACKEND);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &f.ring_of(3));
        f.add_vip(vip_key(0, UDP), Dsr::L3Ipip, Scheduler::Maglev, &f.ring_of(3));
        f.add_vip(vip_key(443, TCP), Dsr::L2, Scheduler::Maglev, &f.ring_of(4));
        f.lift_icmp_rate_limit();
        check_cases(f, CASES);
    });
}
