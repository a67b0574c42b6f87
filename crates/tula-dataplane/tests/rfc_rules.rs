//! What the RFCs require of the frames the balancer must not forward as they
//! are, must not answer, or must leave to the host: impossible IPv4 lengths
//! and truncated datagrams (RFC 791, RFC 1122 3.2.1), ICMP never sent where
//! RFC 1122 3.2.2 / RFC 1812 4.3.2.7 forbid it, later fragments that are not
//! ours, and the outer IP ID of packets that may be fragmented (RFC 6864).

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{IpNumber, Ipv4Header, PacketBuilder};
use support::*;
use tula_dataplane::abi::VipFilter;
use tula_dataplane::{Counter, Dsr, Scheduler, XdpAction};

/// Sets bytes 2..4 of the IPv4 header at `l3` (tot_len) and fixes its checksum.
fn set_tot_len(frame: &mut [u8], l3: usize, tot_len: u16) {
    frame[l3 + 2..l3 + 4].copy_from_slice(&tot_len.to_be_bytes());
    fix_ipv4_checksum(frame, l3);
}

fn fix_ipv4_checksum(frame: &mut [u8], l3: usize) {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    frame[l3 + 10..l3 + 12].fill(0);
    let check = rfc1071(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&check.to_be_bytes());
}

#[test]
fn a_tot_len_below_the_header_or_past_the_bytes_present_is_malformed() {
    in_lab("totlen", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let good = tcp_frame(f.lb_mac, client(40000), vip(80));
        let present = (good.len() - 14) as u16;
        let bad = |tot_len: u16| {
            let mut frame = good.clone();
            set_tot_len(&mut frame, 14, tot_len);
            frame
        };
        // Below IHL * 4; one byte past the frame; far past it (a cheap ICMP
        // generator once, with DF: an 82-byte frame claiming 1,543 bytes).
        let mut cut = good.clone();
        cut.pop();
        let mut claims_more = good.clone();
        claims_more.resize(82, 0);
        set_tot_len(&mut claims_more, 14, 1543);
        let frames = [bad(0), bad(19), bad(present + 1), cut, claims_more];

        // A per-port VIP cannot claim them: passed for the kernel to judge, untouched.
        for frame in &frames {
            let (action, out, delta) = run(f, frame);
            assert_eq!(action, XdpAction::Pass, "{frame:02x?}");
            assert_eq!(&out, frame);
            assert_counted(&delta, &[(Counter::Pass, 1), (Counter::Malformed, 1)]);
        }
        // An all-ports VIP does: dropped.
        f.add_vip(vip_key(0, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        for frame in &frames {
            let (action, _, delta) = run(f, frame);
            assert_eq!(action, XdpAction::Drop, "{frame:02x?}");
            assert_counted(&delta, &[(Counter::Drop, 1), (Counter::Malformed, 1)]);
        }
        // A TCP header past tot_len, though the bytes are in the frame (a trailer), is cut short too.
        let mut short = good.clone();
        set_tot_len(&mut short, 14, 20 + 19);
        let (action, _, delta) = run(f, &short);
        assert_eq!(action, XdpAction::Drop);
        assert_counted(&delta, &[(Counter::Drop, 1), (Counter::Malformed, 1)]);
        // Exactly the bytes present is fine.
        assert_eq!(run(f, &bad(present)).0, XdpAction::Tx);
    });
}

#[test]
fn the_mtu_decision_uses_the_real_length_and_a_trailer_is_never_forwarded() {
    in_lab("trailer", |f| {
        f.add_backend(3, routed_backend(3));
        f.add_backend(4, L2_BACKEND);
        f.add_vip(
            vip_key(80, TCP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(3),
        );
        f.add_vip(vip_key(81, TCP), Dsr::L2, Scheduler::Maglev, &f.ring_of(4));

        // A minimum-size Ethernet frame: a 54-byte ACK padded to 60.
        let ack = tcp_frame(f.lb_mac, client(40000), vip(80));
        let mut padded = ack.clone();
        padded.resize(ack.len() + 6, 0);
        let (action, out, _) = run(f, &padded);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(
            out,
            expected_ipip(&ack, 14, f.lb_mac, NEXT_HOP_MAC, LB_ADDR, routed_backend(3))
        );

        // A 1,495-byte frame whose datagram is 1,400 bytes: 1,420 + 14 leave, within the MTU.
        let datagram = sized_tcp_frame(f.lb_mac, client(40001), vip(80), 1400, true, None);
        let mut long = datagram.clone();
        long.resize(1495, 0xee);
        let (action, out, delta) = run(f, &long);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(out.len(), 14 + 20 + 1400);
        assert_eq!(
            out,
            expected_ipip(
                &datagram,
                14,
                f.lb_mac,
                NEXT_HOP_MAC,
                LB_ADDR,
                routed_backend(3)
            )
        );
        assert_counted(&delta, &[(Counter::Tx, 1), (Counter::LruMiss, 1)]);

        // L2 DSR: the same frame leaves as the datagram alone.
        let datagram = sized_tcp_frame(f.lb_mac, client(40001), vip(81), 1400, true, None);
        let mut long = datagram.clone();
        long.resize(1495, 0xee);
        let (action, out, _) = run(f, &long);
        assert_eq!(action, XdpAction::Tx);
        let mut expected = datagram.clone();
        expected[0..6].copy_from_slice(&L2_BACKEND_MAC);
        expected[6..12].copy_from_slice(&f.lb_mac);
        assert_eq!(out, expected);
    });
}

/// A `sized_tcp_frame` of 1481 bytes with DF (one byte over lb0's tunnel
/// MTU), from `src`, to the MAC `dst_mac`.
fn too_big_from(f: &Fixture, src: Ipv4Addr, dst_mac: [u8; 6]) -> Vec<u8> {
    let mut frame = sized_tcp_frame(
        f.lb_mac,
        SocketAddrV4::new(src, 40000),
        vip(80),
        1481,
        true,
        None,
    );
    frame[0..6].copy_from_slice(&dst_mac);
    frame
}

/// Sources no ICMP may be sent to (RFC 1122 3.2.1.3, 3.2.2): "this network",
/// loopback, multicast, reserved, limited broadcast.
const INVALID_SOURCES: [Ipv4Addr; 6] = [
    Ipv4Addr::new(0, 0, 0, 0),
    Ipv4Addr::new(0, 1, 2, 3),
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(224, 0, 0, 5),
    Ipv4Addr::new(240, 0, 0, 1),
    Ipv4Addr::new(255, 255, 255, 255),
];
const L2_GROUP_MACS: [[u8; 6]; 2] = [[0xff; 6], [0x01, 0x00, 0x5e, 0x00, 0x00, 0x05]];

#[test]
fn no_fragmentation_needed_where_rfc_1122_and_1812_forbid_it() {
    in_lab("noicmp", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        f.add_vip(vip_key(0, UDP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        // No rate limit in the way: every refusal here is the rule's.
        f.lift_icmp_rate_limit();
        let forbidden = |f: &Fixture, frame: &[u8], what: &str| {
            let (action, _, delta) = run(f, frame);
            assert_eq!(action, XdpAction::Drop, "{what}");
            assert_eq!(delta.get(Counter::FragNeeded), 1, "{what}");
            assert_eq!(delta.get(Counter::IcmpForbidden), 1, "{what}");
            assert_eq!(delta.get(Counter::IcmpFragNeeded), 0, "{what}");
            assert_eq!(delta.get(Counter::Drop), 1, "{what}");
        };

        // The same packet from a client, to the LB's MAC, is answered: the rule is what differs.
        let answered = too_big_from(f, CLIENT, f.lb_mac);
        assert_eq!(
            run(f, &answered).1,
            expected_frag_needed(&answered, 14, 1480)
        );
        for src in INVALID_SOURCES {
            forbidden(f, &too_big_from(f, src, f.lb_mac), &format!("source {src}"));
        }
        for mac in L2_GROUP_MACS {
            forbidden(
                f,
                &too_big_from(f, CLIENT, mac),
                &format!("to MAC {mac:02x?}"),
            );
        }

        // An ICMP error (quoting a VIP flow) that is too big with DF.
        let small = icmp_error_frame(f.lb_mac, frag_needed_type(1400), client(42000), vip(80));
        let mut quote = small[14 + 28..].to_vec();
        quote.resize(1481 - 28, 0x33);
        let mut error = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, f.lb_mac)
            .ipv4(CLIENT_ROUTER.octets(), VIP.octets(), 60)
            .icmpv4(frag_needed_type(1400))
            .write_to_vec(&mut error, &quote)
            .unwrap();
        forbidden(f, &error, "an ICMP error");

        // A later fragment with DF, too big, of a datagram whose first fragment went to a backend.
        let first_payload = udp_first_fragment_payload(5000, 53, 3000);
        assert_eq!(
            run(f, &fragment(f.lb_mac, 0x0404, 0, true, &first_payload)).0,
            XdpAction::Tx
        );
        let mut later = fragment(f.lb_mac, 0x0404, 2, false, &vec![0x44; 1461]);
        later[14 + 6] |= 0x40; // DF
        fix_ipv4_checksum(&mut later, 14);
        forbidden(f, &later, "a later fragment");
    });
}

#[test]
fn no_echo_reply_to_an_invalid_source_or_an_l2_group_address() {
    in_lab("noecho", |f| {
        f.add_backend(3, routed_backend(3));
        f.add_vip(
            vip_key(80, TCP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(3),
        );
        let request = echo_request(f.lb_mac, VIP);
        assert_eq!(run(f, &request).0, XdpAction::Tx, "a client is answered");
        let mut frames = Vec::new();
        for src in INVALID_SOURCES {
            let mut frame = request.clone();
            frame[26..30].copy_from_slice(&src.octets());
            fix_ipv4_checksum(&mut frame, 14);
            frames.push(frame);
        }
        for mac in L2_GROUP_MACS {
            let mut frame = request.clone();
            frame[0..6].copy_from_slice(&mac);
            frames.push(frame);
        }
        for frame in frames {
            let (action, out, delta) = run(f, &frame);
            assert_eq!(action, XdpAction::Drop, "{frame:02x?}");
            assert_eq!(out, frame);
            assert_counted(&delta, &[(Counter::Drop, 1), (Counter::IcmpForbidden, 1)]);
        }
    });
}

/// A later fragment (offset 16 bytes, last) of datagram `id` from the client to `dst`.
fn later_fragment_to(lb_mac: [u8; 6], dst: Ipv4Addr, protocol: IpNumber, id: u16) -> Vec<u8> {
    fragment_to(lb_mac, dst, protocol, id, 2, false, b"the rest of it")
}

#[test]
fn later_fragments_that_are_not_ours_pass_to_the_host() {
    in_lab("fragpass", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        // An address of the lab range that shares the VIP's filter bit.
        let neighbour = (0..=u16::MAX)
            .map(|n| Ipv4Addr::new(198, 18, (n >> 8) as u8, n as u8))
            .find(|a| VipFilter::bit(*a) == VipFilter::bit(VIP))
            .expect("an address sharing the VIP's filter bit");

        let passes = |f: &Fixture, frame: &[u8], what: &str| {
            let (action, out, delta) = run(f, frame);
            assert_eq!(action, XdpAction::Pass, "{what}");
            assert_eq!(out, frame, "{what}");
            assert_counted(&delta, &[(Counter::Pass, 1), (Counter::FragPassed, 1)]);
        };
        passes(
            f,
            &later_fragment_to(f.lb_mac, neighbour, IpNumber::UDP, 1),
            "non-VIP address",
        );
        passes(
            f,
            &later_fragment_to(f.lb_mac, neighbour, IpNumber::TCP, 2),
            "non-VIP address, TCP",
        );
        // UDP to the VIP's address, which balances TCP 80 only: the host's own datagram.
        let first_payload = udp_first_fragment_payload(5000, 5353, 38);
        let first = fragment(f.lb_mac, 3, 0, true, &first_payload);
        let (action, _, delta) = run(f, &first);
        assert_eq!(action, XdpAction::Pass);
        assert_counted(&delta, &[(Counter::Pass, 1), (Counter::NotVip, 1)]);
        passes(
            f,
            &later_fragment_to(f.lb_mac, VIP, IpNumber::UDP, 3),
            "UDP to the VIP address",
        );
        // TCP to a port no VIP balances, with only per-port VIPs: cannot be known to be ours.
        passes(
            f,
            &later_fragment_to(f.lb_mac, VIP, IpNumber::TCP, 4),
            "TCP, per-port VIP",
        );

        // With an all-ports VIP it can only be that VIP's: an orphan, dropped.
        f.add_vip(vip_key(0, UDP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let (action, _, delta) = run(f, &later_fragment_to(f.lb_mac, VIP, IpNumber::UDP, 5));
        assert_eq!(action, XdpAction::Drop);
        assert_counted(&delta, &[(Counter::Drop, 1), (Counter::FragOrphan, 1)]);
    });
}

/// The outer IP ID of an IPIP frame (Ethernet untagged).
fn outer_id(out: &[u8]) -> u16 {
    u16::from_be_bytes([out[18], out[19]])
}

#[test]
fn outer_headers_without_df_count_ip_ids_per_backend() {
    in_lab("ipid", |f| {
        stay_on_cpu0();
        f.add_backend(3, routed_backend(3));
        f.add_backend(5, routed_backend(5));
        f.add_vip(
            vip_key(53, UDP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(3),
        );
        f.add_vip(
            vip_key(54, UDP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(5),
        );
        let datagram = |port: u16, df: bool| {
            let mut ip =
                Ipv4Header::new(0, 64, IpNumber::UDP, CLIENT.octets(), VIP.octets()).unwrap();
            ip.dont_fragment = df;
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(CLIENT_MAC, f.lb_mac)
                .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
                .udp(40000, port)
                .write_to_vec(&mut frame, b"no DF here")
                .unwrap();
            frame
        };
        // Backend 3: 1, 2, 3 on CPU 0; with DF, 0 and the count stays.
        for (port, df, backend, id) in [
            (53, false, 3, 1),
            (53, false, 3, 2),
            (53, true, 3, 0),
            (54, false, 5, 1),
            (53, false, 3, 3),
        ] {
            let frame = datagram(port, df);
            let (action, out, _) = run(f, &frame);
            assert_eq!(action, XdpAction::Tx);
            assert_eq!(outer_id(&out), id, "port {port}, DF {df}");
            assert_eq!(
                out,
                expected_ipip_with_id(
                    &frame,
                    14,
                    f.lb_mac,
                    NEXT_HOP_MAC,
                    LB_ADDR,
                    routed_backend(backend),
                    id
                )
            );
        }
    });
}
