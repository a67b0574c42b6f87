//! IPv6 through the balancer, in the fixture-table style of fixtures.rs: one
//! row per class of frame (built by support/frames6.rs), its verdict, the
//! bytes that leave and the counters that move, run one after the other in
//! one namespace. IP6IP6 and IPv4-in-IPv6 to IPv6 backends, L2 DSR, extension
//! headers, fragments, Packet Too Big, echo, ICMPv6 errors and RFC 4443 2.4.

mod support;

use std::net::{Ipv6Addr, SocketAddrV6};

use etherparse::{Icmpv6Type, IpNumber, PacketBuilder};
use support::*;
use tula_dataplane::{
    flow6_label, flow_label, Counter, Dsr, Flow, InterfaceSpec, Protocol, Scheduler, XdpAction,
};

/// Backend ids of the table's lab.
const ROUTED6: u32 = 5;
const ON_LINK6: u32 = 6;
const ROUTED4: u32 = 3;

/// IP6IP6 of `frame` to the routed IPv6 backend, labelled for `client`'s flow to `vip`.
fn ip6ip6(
    f: &Fixture,
    frame: &[u8],
    client: SocketAddrV6,
    vip: SocketAddrV6,
    protocol: Protocol,
) -> Vec<u8> {
    expected_ip6_tunnel(
        frame,
        f.lb_mac,
        NEXT_HOP_MAC,
        LB_ADDR6,
        routed_backend6(ROUTED6 as u16),
        IpNumber(41),
        frame[14] << 4 | frame[15] >> 4,
        flow6_label(client, vip, protocol),
    )
}

fn multicast_client(port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), port, 0, 0)
}

const DEST_OPTIONS: u8 = 60;
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;

const CASES: &[Case] = &[
    Case {
        what: "TCP to an IPv6 L3 VIP: IP6IP6 (next header 41) to the routed IPv6 backend",
        frame: |f| tcp6_frame(f.lb_mac, client6(41001), vip6(80)),
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ip6ip6(f, frame, client6(41001), vip6(80), Protocol::Tcp)),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "the same flow again: from the IPv6 connection table",
        frame: |f| tcp6_frame(f.lb_mac, client6(41001), vip6(80)),
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ip6ip6(f, frame, client6(41001), vip6(80), Protocol::Tcp)),
        counters: &[Counter::Tx, Counter::LruHit],
    },
    Case {
        what: "UDP to an all-ports IPv6 VIP",
        frame: |f| udp6_frame(f.lb_mac, client6(41002), vip6(5353)),
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ip6ip6(f, frame, client6(41002), vip6(5353), Protocol::Udp)),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "TCP to an IPv6 L2 VIP: the MAC addresses rewritten (from the ND neighbour), nothing else",
        frame: |f| tcp6_frame(f.lb_mac, client6(41003), vip6(443)),
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
        what: "TCP to an IPv4 VIP served by an IPv6 backend: IPv4 in IPv6 (next header 4)",
        frame: |f| tcp_frame(f.lb_mac, client(41004), vip(8080)),
        verdict: XdpAction::Tx,
        output: Some(|f, frame| {
            let flow = Flow {
                client: client(41004),
                vip: vip(8080),
                protocol: Protocol::Tcp,
            };
            expected_ip6_tunnel(
                frame,
                f.lb_mac,
                NEXT_HOP_MAC,
                LB_ADDR6,
                routed_backend6(ROUTED6 as u16),
                IpNumber::IPV4,
                frame[15],
                flow_label(&flow),
            )
        }),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "TCP to an IPv6 L3 VIP with an IPv4 backend: no IPv6-in-IPv4, dropped",
        frame: |f| tcp6_frame(f.lb_mac, client6(41005), vip6(81)),
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::LruMiss, Counter::NoBackend],
    },
    Case {
        what: "hop-by-hop and destination options before TCP: looked through to the ports",
        frame: |f| {
            let frame = tcp6_frame(f.lb_mac, client6(41006), vip6(80));
            with_extensions(&frame, &[(HOP_BY_HOP, options_header()), (DEST_OPTIONS, options_header())])
        },
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ip6ip6(f, frame, client6(41006), vip6(80), Protocol::Tcp)),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "a routing header: looked through",
        frame: |f| {
            let frame = tcp6_frame(f.lb_mac, client6(41007), vip6(80));
            with_extensions(&frame, &[(ROUTING, routing_header())])
        },
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ip6ip6(f, frame, client6(41007), vip6(80), Protocol::Tcp)),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "five extension headers: more than the balancer looks through, passed unguessed",
        frame: |f| {
            let frame = tcp6_frame(f.lb_mac, client6(41008), vip6(80));
            let options = vec![(DEST_OPTIONS, options_header()); 5];
            with_extensions(&frame, &options)
        },
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::Malformed],
    },
    Case {
        what: "a first fragment: balanced by its ports and remembered",
        frame: |f| {
            let frame = udp6_frame(f.lb_mac, client6(41009), vip6(53));
            with_extensions(&frame, &[(FRAGMENT, fragment_header(0, true, 0x7700_0001))])
        },
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ip6ip6(f, frame, client6(41009), vip6(53), Protocol::Udp)),
        counters: &[Counter::Tx, Counter::LruMiss, Counter::FragFirst],
    },
    Case {
        what: "its later fragment: no ports, follows the first one with the same flow label",
        frame: |f| later_fragment6(f.lb_mac, VIP6, 17, 0x7700_0001, b"the rest of the datagram"),
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ip6ip6(f, frame, client6(41009), vip6(53), Protocol::Udp)),
        counters: &[Counter::Tx, Counter::Fragment],
    },
    Case {
        what: "a later UDP fragment whose first never came, all-ports UDP VIP: an orphan",
        frame: |f| later_fragment6(f.lb_mac, VIP6, 17, 0x7700_0002, b"rest"),
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::FragOrphan],
    },
    Case {
        what: "a later TCP fragment, no all-ports TCP VIP: the host's",
        frame: |f| later_fragment6(f.lb_mac, VIP6, 6, 0x7700_0003, b"rest"),
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::FragPassed],
    },
    Case {
        what: "a payload length past the bytes present, all-ports UDP VIP: malformed, dropped",
        frame: |f| {
            let mut frame = udp6_frame(f.lb_mac, client6(41010), vip6(53));
            let len = u16::from_be_bytes([frame[18], frame[19]]) + 1;
            frame[18..20].copy_from_slice(&len.to_be_bytes());
            frame
        },
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::Malformed],
    },
    Case {
        what: "1461 bytes, one over the tunnel MTU: Packet Too Big reporting 1460",
        frame: |f| sized_tcp6_frame(f.lb_mac, client6(41011), vip6(80), 1461),
        verdict: XdpAction::Tx,
        output: Some(|_, frame| expected_packet_too_big(frame, 1460)),
        counters: &[Counter::Tx, Counter::LruMiss, Counter::FragNeeded, Counter::IcmpFragNeeded],
    },
    Case {
        what: "exactly the tunnel MTU: encapsulated",
        frame: |f| sized_tcp6_frame(f.lb_mac, client6(41012), vip6(80), 1460),
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ip6ip6(f, frame, client6(41012), vip6(80), Protocol::Tcp)),
        counters: &[Counter::Tx, Counter::LruMiss],
    },
    Case {
        what: "too big from a multicast source: no ICMPv6 (RFC 4443 2.4 (e.3))",
        frame: |f| sized_tcp6_frame(f.lb_mac, multicast_client(41013), vip6(80), 1461),
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::LruMiss, Counter::FragNeeded, Counter::IcmpForbidden],
    },
    Case {
        what: "too big to an Ethernet multicast address: no ICMPv6",
        frame: |f| {
            let mut frame = sized_tcp6_frame(f.lb_mac, client6(41014), vip6(80), 1461);
            frame[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
            frame
        },
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::LruMiss, Counter::FragNeeded, Counter::IcmpForbidden],
    },
    Case {
        what: "an echo request to an IPv6 VIP: answered",
        frame: |f| echo6_request(f.lb_mac, CLIENT6, VIP6),
        verdict: XdpAction::Tx,
        output: Some(|_, frame| expected_echo6_reply(frame)),
        counters: &[Counter::Tx, Counter::IcmpEcho],
    },
    Case {
        what: "an echo request from the unspecified address: never answered",
        frame: |f| echo6_request(f.lb_mac, Ipv6Addr::UNSPECIFIED, VIP6),
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::IcmpForbidden],
    },
    Case {
        what: "an echo request from ::1: never answered",
        frame: |f| echo6_request(f.lb_mac, Ipv6Addr::LOCALHOST, VIP6),
        verdict: XdpAction::Drop,
        output: None,
        counters: &[Counter::Drop, Counter::IcmpForbidden],
    },
    Case {
        what: "a Packet Too Big quoting a backend's reply: to that flow's backend",
        frame: |f| icmp6_error_frame(f.lb_mac, Icmpv6Type::PacketTooBig { mtu: 1400 }, client6(41015), vip6(80)),
        verdict: XdpAction::Tx,
        output: Some(|f, frame| ip6ip6(f, frame, client6(41015), vip6(80), Protocol::Tcp)),
        counters: &[Counter::Tx, Counter::LruMiss, Counter::IcmpToBackend],
    },
    Case {
        what: "a neighbour solicitation for the VIP: the kernel's",
        frame: |f| {
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(CLIENT_MAC, f.lb_mac)
                .ipv6(CLIENT6.octets(), VIP6.octets(), 255)
                .icmpv6(Icmpv6Type::Unknown {
                    type_u8: 135,
                    code_u8: 0,
                    bytes5to8: [0; 4],
                })
                .write_to_vec(&mut frame, &VIP6.octets())
                .unwrap();
            frame
        },
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::NotVip],
    },
    Case {
        what: "TCP to an IPv6 address that is no VIP",
        frame: |f| tcp6_frame(f.lb_mac, client6(41016), SocketAddrV6::new(routed_backend6(9), 80, 0, 0)),
        verdict: XdpAction::Pass,
        output: None,
        counters: &[Counter::Pass, Counter::NotVip],
    },
];

#[test]
fn every_class_of_ipv6_frame_gets_its_verdict_bytes_and_counters() {
    in_lab("ipv6", |f| {
        stay_on_cpu0();
        f.add_backend(ROUTED4, routed_backend(3));
        f.add_backend(ROUTED6, routed_backend6(ROUTED6 as u16));
        f.add_backend(ON_LINK6, L2_BACKEND6);
        f.add_vip(
            vip6_key(80, TCP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(ROUTED6),
        );
        f.add_vip(
            vip6_key(81, TCP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(ROUTED4),
        );
        f.add_vip(
            vip6_key(0, UDP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(ROUTED6),
        );
        f.add_vip(
            vip6_key(443, TCP),
            Dsr::L2,
            Scheduler::Maglev,
            &f.ring_of(ON_LINK6),
        );
        f.add_vip(
            vip_key(8080, TCP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(ROUTED6),
        );
        f.lift_icmp_rate_limit();
        check_cases(f, CASES);
        assert!(f.dataplane.answers_echo(VIP6.into()).unwrap());
        let vips = f.dataplane.vips().unwrap();
        assert!(vips
            .iter()
            .any(|(key, _)| key.to_string() == "tcp [2001:db8:113::10]:80"));
        let backend = f.dataplane.backend(ROUTED6).unwrap().unwrap();
        assert_eq!(backend.addr, routed_backend6(ROUTED6 as u16));
    });
}

/// A tunnel MTU below 1280: a packet over 1280 is told 1280 (never less,
/// RFC 8200 5); one of 1280 bytes that still does not fit is dropped, since
/// nothing on the way may fragment it.
#[test]
fn packet_too_big_never_reports_less_than_1280() {
    in_lab("ipv6mtu", |f| {
        f.dataplane
            .set_interface(
                "lb0",
                &InterfaceSpec {
                    path_mtu: Some(1300),
                    ..Default::default()
                },
            )
            .unwrap();
        f.add_backend(ROUTED6, routed_backend6(ROUTED6 as u16));
        f.add_vip(
            vip6_key(80, TCP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(ROUTED6),
        );
        f.lift_icmp_rate_limit();

        let frame = sized_tcp6_frame(f.lb_mac, client6(42001), vip6(80), 1281);
        let (action, out, delta) = run(f, &frame);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(out, expected_packet_too_big(&frame, 1280));
        assert_counted(
            &delta,
            &[
                (Counter::Tx, 1),
                (Counter::LruMiss, 1),
                (Counter::FragNeeded, 1),
                (Counter::IcmpFragNeeded, 1),
            ],
        );

        let frame = sized_tcp6_frame(f.lb_mac, client6(42002), vip6(80), 1280);
        let (action, out, delta) = run(f, &frame);
        assert_eq!(action, XdpAction::Drop);
        assert_eq!(out, frame);
        assert_counted(
            &delta,
            &[
                (Counter::Drop, 1),
                (Counter::LruMiss, 1),
                (Counter::TooBigDropped, 1),
            ],
        );

        let frame = sized_tcp6_frame(f.lb_mac, client6(42003), vip6(80), 1260);
        let (action, out, _) = run(f, &frame);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(
            out,
            ip6ip6(f, &frame, client6(42003), vip6(80), Protocol::Tcp)
        );
    });
}

/// Packet Too Big is rate-limited like Fragmentation Needed, and switched off with it.
#[test]
fn packet_too_big_is_rate_limited_and_can_be_switched_off() {
    in_lab("ipv6ptb", |f| {
        stay_on_cpu0();
        f.add_backend(ROUTED6, routed_backend6(ROUTED6 as u16));
        f.add_vip(
            vip6_key(80, TCP),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &f.ring_of(ROUTED6),
        );
        f.dataplane
            .set_icmp(&tula_dataplane::IcmpSettings {
                frag_needed: true,
                per_second: 1,
                burst: 1,
            })
            .unwrap();
        let frame = sized_tcp6_frame(f.lb_mac, client6(43001), vip6(80), 1461);
        let (action, _, _) = run(f, &frame);
        assert_eq!(action, XdpAction::Tx);
        let (action, _, delta) = run(f, &frame);
        assert_eq!(action, XdpAction::Drop);
        assert_eq!(delta.get(Counter::IcmpSuppressed), 1);

        f.dataplane
            .set_icmp(&tula_dataplane::IcmpSettings {
                frag_needed: false,
                ..Default::default()
            })
            .unwrap();
        let (action, _, delta) = run(f, &frame);
        assert_eq!(action, XdpAction::Drop);
        assert_eq!(delta.get(Counter::FragNeeded), 1);
        assert_eq!(delta.get(Counter::IcmpFragNeeded), 0);
    });
}

/// The connection tally that `tula status` and the UI read counts IPv6 flows
/// from `conns6` by (VIP id, backend id), as it counts IPv4 ones.
#[test]
fn the_connection_tally_counts_ipv6_flows() {
    in_lab("tally6", |f| {
        f.add_backend(ROUTED6, routed_backend6(ROUTED6 as u16));
        f.add_vip(vip6_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &f.ring_of(ROUTED6));
        for port in 42001..42004 {
            let frame = tcp6_frame(f.lb_mac, client6(port), vip6(80));
            let (action, _) = f.dataplane.test_run(&frame, Some(f.ingress)).unwrap();
            assert_eq!(action, XdpAction::Tx);
        }
        let tally = f.dataplane.conn_tally(0).unwrap();
        let flows = tally.get(&(1, ROUTED6)).unwrap_or_else(|| panic!("no IPv6 flows in {tally:?}"));
        assert_eq!((flows.entries, flows.active), (3, 3));
        assert!(flows.last_seen > 0);
    });
}

#[test]
fn an_ipv6_syn_waits_in_the_syn_table_until_the_connections_next_packet() {
    in_lab("syn6", |f| {
        f.add_backend(ROUTED6, routed_backend6(ROUTED6 as u16));
        f.add_backend(7, routed_backend6(7));
        let key = vip6_key(80, TCP);
        let (ring5, ring7) = (f.ring_of(ROUTED6), f.ring_of(7));
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring5);
        // The outer IPv6 header's destination: the backend the frame went to.
        let sent_to = |f: &Fixture, frame: &[u8]| {
            let (action, out) = f.dataplane.test_run(frame, Some(f.ingress)).unwrap();
            assert_eq!(action, XdpAction::Tx);
            Ipv6Addr::from(<[u8; 16]>::try_from(&out[38..54]).unwrap())
        };
        let syn = syn6_frame(f.lb_mac, client6(42100), vip6(80));
        assert_eq!(sent_to(f, &syn), routed_backend6(ROUTED6 as u16));
        assert!(f.dataplane.conn_tally(0).unwrap().is_empty(), "the SYN is not in conns6");

        // The ring changes during the handshake: the ACK follows the SYN into conns6.
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring7);
        let ack = tcp6_frame(f.lb_mac, client6(42100), vip6(80));
        assert_eq!(sent_to(f, &ack), routed_backend6(ROUTED6 as u16), "the handshake's ACK");
        let tally = f.dataplane.conn_tally(0).unwrap();
        assert_eq!(tally.get(&(1, ROUTED6)).map(|t| t.entries), Some(1), "{tally:?}");
        assert_eq!(sent_to(f, &ack), routed_backend6(ROUTED6 as u16));
    });
}
