//! Path MTU, ICMP and fragments, packet in and packet out: Fragmentation
//! Needed for DF packets too big for the tunnel, outer DF clear for the
//! others, ICMP errors following their flow to its backend, echo replies,
//! fragments following their first one, and the ICMP rate limit. Every
//! expected frame is built here with etherparse, independently of the C code.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, IpHeaders, IpNumber, Ipv4Header, PacketBuilder, VlanId};
use support::*;
use tula_dataplane::{
    flow_hash, ring_index, Counter, Dsr, Flow, IcmpSettings, InterfaceSpec, Scheduler, VipSpec,
    XdpAction,
};

#[test]
fn a_df_packet_one_byte_over_the_tunnel_mtu_gets_fragmentation_needed() {
    in_lab("fragneed", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);

        // lb0's MTU is 1500: 1480 bytes of client packet fit in the tunnel.
        let fits = sized_tcp_frame(f.lb_mac, client(40000), vip(80), 1480, true, None);
        let (action, out, delta) = run(f, &fits);
        assert_eq!(action, XdpAction::Tx, "exactly at the limit");
        assert_eq!(
            out,
            expected_ipip(
                &fits,
                14,
                f.lb_mac,
                NEXT_HOP_MAC,
                LB_ADDR,
                routed_backend(3)
            )
        );
        assert_eq!(out.len() - 14, 1500);
        assert_counted(&delta, &[(Counter::Tx, 1), (Counter::LruMiss, 1)]);

        let over = sized_tcp_frame(f.lb_mac, client(40000), vip(80), 1481, true, None);
        let (action, out, delta) = run(f, &over);
        assert_eq!(action, XdpAction::Tx, "one byte over");
        let expected = expected_frag_needed(&over, 14, 1480);
        assert_eq!(out, expected);
        // What the reply must say, spelled out besides the independent build above.
        assert_eq!(out.len(), 14 + 20 + 8 + 20 + 8);
        assert_eq!(&out[0..6], &CLIENT_MAC);
        assert_eq!(&out[6..12], &f.lb_mac);
        assert_eq!(&out[26..30], &VIP.octets(), "from the VIP");
        assert_eq!(&out[30..34], &CLIENT.octets(), "to the client");
        assert_eq!((out[34], out[35]), (3, 4), "type 3 code 4");
        assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1480, "next-hop MTU");
        assert_eq!(
            &out[42..],
            &over[14..14 + 28],
            "quotes the header and 8 bytes"
        );
        assert_eq!(rfc1071(&out[14..34]), 0, "IPv4 checksum");
        assert_eq!(rfc1071(&out[34..]), 0, "ICMP checksum");
        assert_counted(
            &delta,
            &[
                (Counter::Tx, 1),
                (Counter::LruHit, 1),
                (Counter::FragNeeded, 1),
                (Counter::IcmpFragNeeded, 1),
            ],
        );
        assert_eq!(
            f.dataplane.backend_traffic(3).unwrap().packets,
            1,
            "nothing went to the backend"
        );
    });
}

#[test]
fn fragmentation_needed_quotes_ip_options_and_keeps_the_vlan_tag() {
    in_lab("fragopts", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        f.dataplane
            .set_interface(
                "lb0",
                &InterfaceSpec {
                    vlan: Some(tula_dataplane::Vlan {
                        id: 7,
                        lower: "lb0".into(),
                    }),
                    ..InterfaceSpec::default()
                },
            )
            .unwrap();
        // A 28-byte IPv4 header (8 bytes of options), tagged, 1481 bytes.
        let mut ip = Ipv4Header::new(0, 61, IpNumber::TCP, CLIENT.octets(), VIP.octets()).unwrap();
        ip.options = etherparse::Ipv4Options::try_from(&[1u8, 1, 1, 1, 1, 1, 1, 0][..]).unwrap();
        ip.dont_fragment = true;
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, f.lb_mac)
            .single_vlan(VlanId::try_new(7).unwrap())
            .ip(IpHeaders::Ipv4(ip, Default::default()))
            .tcp(40000, 80, 1, 1000)
            .write_to_vec(&mut frame, &vec![0x5a; 1481 - 48])
            .unwrap();
        let (action, out, _) = run(f, &frame);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(out, expected_frag_needed(&frame, 18, 1480));
        assert_eq!(out.len(), 18 + 28 + 28 + 8, "the options are quoted");
        assert_eq!(rfc1071(&out[18..38]), 0);
        assert_eq!(rfc1071(&out[38..]), 0);
    });
}

#[test]
fn an_interface_path_mtu_lowers_the_limit_and_never_raises_it() {
    in_lab("mtuover", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let with_mtu = |mtu| InterfaceSpec {
            path_mtu: Some(mtu),
            ..InterfaceSpec::default()
        };
        f.dataplane.set_interface("lb0", &with_mtu(1400)).unwrap();
        assert_eq!(f.dataplane.path_mtu(routed_backend(3)).unwrap(), Some(1400));
        let fits = sized_tcp_frame(f.lb_mac, client(40000), vip(80), 1380, true, None);
        assert_eq!(run(f, &fits).0, XdpAction::Tx);
        assert_eq!(run(f, &fits).1.len(), 14 + 1400);
        let over = sized_tcp_frame(f.lb_mac, client(40000), vip(80), 1381, true, None);
        let (action, out, _) = run(f, &over);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(out, expected_frag_needed(&over, 14, 1380));

        // Above the route MTU (lb0: 1500) it changes nothing.
        f.dataplane.set_interface("lb0", &with_mtu(9000)).unwrap();
        assert_eq!(f.dataplane.path_mtu(routed_backend(3)).unwrap(), Some(1500));
        let over = sized_tcp_frame(f.lb_mac, client(40000), vip(80), 1481, true, None);
        assert_eq!(run(f, &over).1, expected_frag_needed(&over, 14, 1480));
        assert_eq!(run(f, &over.clone()).0, XdpAction::Tx);
        let fits = sized_tcp_frame(f.lb_mac, client(40000), vip(80), 1480, true, None);
        assert_eq!(run(f, &fits).1.len(), 14 + 1500);

        // The L2 DSR limit is the MTU itself: no outer header.
        f.add_backend(4, L2_BACKEND);
        let ring4 = f.ring_of(4);
        f.add_vip(vip_key(81, TCP), Dsr::L2, Scheduler::Maglev, &ring4);
        f.dataplane.set_interface("lb0", &with_mtu(1400)).unwrap();
        let fits = sized_tcp_frame(f.lb_mac, client(40000), vip(81), 1400, true, None);
        assert_eq!(run(f, &fits).0, XdpAction::Tx);
        assert_eq!(&run(f, &fits).1[0..6], &L2_BACKEND_MAC);
        let over = sized_tcp_frame(f.lb_mac, client(40000), vip(81), 1401, true, None);
        assert_eq!(run(f, &over).1, expected_frag_needed(&over, 14, 1400));
    });
}

#[test]
fn a_too_big_packet_without_df_is_encapsulated_with_the_outer_df_clear() {
    in_lab("nodf", |f| {
        stay_on_cpu0(); // outer IP IDs count per CPU
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        f.dataplane
            .set_interface(
                "lb0",
                &InterfaceSpec {
                    path_mtu: Some(1400),
                    ..InterfaceSpec::default()
                },
            )
            .unwrap();

        // Over the tunnel MTU but within what lb0 can send: out by XDP, for the path to fragment.
        let frame = sized_tcp_frame(f.lb_mac, client(40000), vip(80), 1381, false, None);
        let (action, out, delta) = run(f, &frame);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(
            out,
            expected_ipip_with_id(
                &frame,
                14,
                f.lb_mac,
                NEXT_HOP_MAC,
                LB_ADDR,
                routed_backend(3),
                1
            )
        );
        assert_eq!(out[14 + 6] & 0x40, 0, "outer DF clear");
        assert_counted(
            &delta,
            &[
                (Counter::Tx, 1),
                (Counter::LruMiss, 1),
                (Counter::TooBigNoDf, 1),
            ],
        );

        // Too big for lb0 itself: encapsulated and handed to the kernel, which fragments it.
        let frame = sized_tcp_frame(f.lb_mac, client(40000), vip(80), 1481, false, None);
        let (action, out, delta) = run(f, &frame);
        assert_eq!(action, XdpAction::Pass);
        assert_eq!(
            out,
            expected_ipip_with_id(
                &frame,
                14,
                CLIENT_MAC,
                f.lb_mac,
                LB_ADDR,
                routed_backend(3),
                2
            )
        );
        assert_eq!(out[14 + 6] & 0x40, 0, "outer DF clear");
        assert_counted(
            &delta,
            &[
                (Counter::Pass, 1),
                (Counter::LruHit, 1),
                (Counter::TooBigNoDf, 1),
            ],
        );
    });
}

#[test]
fn an_icmp_error_about_a_vip_flow_goes_to_that_flows_backend() {
    in_lab("icmperr", |f| {
        // 50 backends around the ring: which one an error reaches says how it was chosen.
        let size = f.dataplane.ring_size();
        let ring: Vec<u32> = (0..size).map(|slot| slot % 50).collect();
        for id in 0..50 {
            f.add_backend(id, routed_backend(id as u8 + 1));
        }
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let ring_choice = |port: u16| {
            let flow = Flow {
                client: client(port),
                vip: vip(80),
                protocol: TCP,
            };
            ring[ring_index(flow_hash(&flow), size)]
        };

        // Not in the connection table: Maglev decides, as for the flow's own packets.
        let unseen = icmp_error_frame(f.lb_mac, frag_needed_type(1400), client(41000), vip(80));
        let (action, out, delta) = run(f, &unseen);
        assert_eq!(action, XdpAction::Tx);
        let backend = routed_backend(ring_choice(41000) as u8 + 1);
        assert_eq!(
            out,
            expected_ipip(&unseen, 14, f.lb_mac, NEXT_HOP_MAC, LB_ADDR, backend)
        );
        assert_counted(
            &delta,
            &[
                (Counter::Tx, 1),
                (Counter::LruMiss, 1),
                (Counter::IcmpToBackend, 1),
            ],
        );
        let unseen_flow = Flow {
            client: client(41000),
            vip: vip(80),
            protocol: TCP,
        };
        assert_eq!(
            f.dataplane.conn(&unseen_flow).unwrap(),
            None,
            "an error starts no flow"
        );

        // An established flow: the connection table decides, even after the ring changed.
        let established = tcp_frame(f.lb_mac, client(42000), vip(80));
        assert_eq!(run(f, &established).0, XdpAction::Tx);
        let owner = ring_choice(42000);
        let other = (owner + 1) % 50;
        let ring_now = f.ring_of(other);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring_now);
        for kind in [
            frag_needed_type(1400),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host),
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
        ] {
            let error = icmp_error_frame(f.lb_mac, kind.clone(), client(42000), vip(80));
            let (action, out, delta) = run(f, &error);
            assert_eq!(action, XdpAction::Tx, "{kind:?}");
            assert_eq!(
                out,
                expected_ipip(
                    &error,
                    14,
                    f.lb_mac,
                    NEXT_HOP_MAC,
                    LB_ADDR,
                    routed_backend(owner as u8 + 1)
                ),
                "{kind:?}"
            );
            assert_counted(
                &delta,
                &[
                    (Counter::Tx, 1),
                    (Counter::LruHit, 1),
                    (Counter::IcmpToBackend, 1),
                ],
            );
        }

        // An error about something that is no VIP flow passes to the kernel untouched.
        for error in [
            icmp_error_frame(f.lb_mac, frag_needed_type(1400), client(42000), vip(81)),
            icmp_error_frame(
                f.lb_mac,
                frag_needed_type(1400),
                client(42000),
                SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 99), 80),
            ),
        ] {
            let (action, out, delta) = run(f, &error);
            assert_eq!(action, XdpAction::Pass);
            assert_eq!(out, error);
            assert_counted(&delta, &[(Counter::Pass, 1), (Counter::NotVip, 1)]);
        }

        // A round-robin VIP: an error about an unknown flow goes where the hash
        // says and takes no turn, so the next new flow still gets the first slot.
        stay_on_cpu0();
        let spec = VipSpec {
            id: 2,
            dsr: Dsr::L3Ipip,
            scheduler: Scheduler::RoundRobin,
            icmp_echo: true,
        };
        f.dataplane
            .set_vip(&vip_key(80, TCP), &spec, &ring)
            .unwrap();
        let unseen = icmp_error_frame(f.lb_mac, frag_needed_type(1400), client(43000), vip(80));
        let (action, out, _) = run(f, &unseen);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(
            out,
            expected_ipip(
                &unseen,
                14,
                f.lb_mac,
                NEXT_HOP_MAC,
                LB_ADDR,
                routed_backend(ring_choice(43000) as u8 + 1)
            )
        );
        assert_ne!(ring_choice(43000), ring[0], "pick another port");
        let syn = syn_frame(f.lb_mac, client(43001), vip(80));
        let (action, out, _) = run(f, &syn);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(&out[30..34], &routed_backend(ring[0] as u8 + 1).octets());
    });
}

#[test]
fn echo_to_a_vip_is_answered_unless_switched_off() {
    in_lab("echo", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        assert!(f.dataplane.answers_echo(VIP.into()).unwrap());

        let request = echo_request(f.lb_mac, VIP);
        let (action, out, delta) = run(f, &request);
        assert_eq!(action, XdpAction::Tx);
        let (request_ip, _) = Ipv4Header::from_slice(&request[14..]).unwrap();
        let mut reply_ip =
            Ipv4Header::new(0, 64, IpNumber::ICMP, VIP.octets(), CLIENT.octets()).unwrap();
        reply_ip.identification = request_ip.identification;
        reply_ip.dont_fragment = request_ip.dont_fragment;
        let mut expected = Vec::new();
        PacketBuilder::ethernet2(f.lb_mac, CLIENT_MAC)
            .ip(IpHeaders::Ipv4(reply_ip, Default::default()))
            .icmpv4_echo_reply(0x4242, 7)
            .write_to_vec(&mut expected, b"are you there, VIP?")
            .unwrap();
        assert_eq!(out, expected);
        assert_eq!(rfc1071(&out[14..34]), 0);
        assert_eq!(rfc1071(&out[34..]), 0);
        assert_counted(&delta, &[(Counter::Tx, 1), (Counter::IcmpEcho, 1)]);

        // A second VIP on the address with echo off: one VIP still answers.
        let spec = |id, icmp_echo| VipSpec {
            id,
            dsr: Dsr::L3Ipip,
            scheduler: Scheduler::Maglev,
            icmp_echo,
        };
        f.dataplane
            .set_vip(&vip_key(53, UDP), &spec(2, false), &ring)
            .unwrap();
        assert_eq!(run(f, &request).0, XdpAction::Tx);
        // Off on every VIP of the address: passed to the kernel untouched.
        f.dataplane
            .set_vip(&vip_key(80, TCP), &spec(1, false), &ring)
            .unwrap();
        assert!(!f.dataplane.answers_echo(VIP.into()).unwrap());
        let (action, out, delta) = run(f, &request);
        assert_eq!(action, XdpAction::Pass);
        assert_eq!(out, request);
        assert_counted(&delta, &[(Counter::Pass, 1), (Counter::NotVip, 1)]);
        // On again, then the VIP removed: not answered.
        f.dataplane
            .set_vip(&vip_key(80, TCP), &spec(1, true), &ring)
            .unwrap();
        assert_eq!(run(f, &request).0, XdpAction::Tx);
        f.dataplane.remove_vip(&vip_key(80, TCP)).unwrap();
        assert_eq!(run(f, &request).0, XdpAction::Pass);
        // An address that is no VIP at all.
        let other = echo_request(f.lb_mac, Ipv4Addr::new(203, 0, 113, 99));
        assert_eq!(run(f, &other).0, XdpAction::Pass);
        // Cut inside the ICMP header: passed, counted malformed.
        f.dataplane
            .set_vip(&vip_key(80, TCP), &spec(1, true), &ring)
            .unwrap();
        let cut = &request[..14 + 20 + 4];
        let (action, out, delta) = run(f, cut);
        assert_eq!((action, out.as_slice()), (XdpAction::Pass, cut));
        assert_counted(&delta, &[(Counter::Pass, 1), (Counter::Malformed, 1)]);
    });
}

#[test]
fn later_fragments_follow_their_first_one_and_orphans_are_dropped() {
    in_lab("frags", |f| {
        stay_on_cpu0(); // outer IP IDs count per CPU and backend
        let size = f.dataplane.ring_size();
        let ring: Vec<u32> = (0..size).map(|slot| slot % 50).collect();
        for id in 0..50 {
            f.add_backend(id, routed_backend(id as u8 + 1));
        }
        f.add_vip(vip_key(0, UDP), Dsr::L3Ipip, Scheduler::Maglev, &ring);

        let mut ids_sent = std::collections::HashMap::<std::net::Ipv4Addr, u16>::new();
        for (id, port) in [(0x0101u16, 5000u16), (0x0102, 5001), (0x0103, 5002)] {
            // UDP header (source port, destination 53, length 24, no checksum) and 8 bytes.
            let first_payload = udp_first_fragment_payload(port, 53, 24);
            let first = fragment(f.lb_mac, id, 0, true, &first_payload);
            let middle = fragment(f.lb_mac, id, 2, true, b"-middle-");
            let last = fragment(f.lb_mac, id, 3, false, b"end");

            let flow = Flow {
                client: client(port),
                vip: vip(53),
                protocol: UDP,
            };
            let backend = routed_backend(ring[ring_index(flow_hash(&flow), size)] as u8 + 1);
            // Fragments have no DF: each takes the backend's next outer IP ID.
            let mut next_id = || {
                let id = ids_sent.entry(backend).or_default();
                *id += 1;
                *id
            };
            let (action, out, delta) = run(f, &first);
            assert_eq!(action, XdpAction::Tx);
            assert_eq!(
                out,
                expected_ipip_with_id(
                    &first,
                    14,
                    f.lb_mac,
                    NEXT_HOP_MAC,
                    LB_ADDR,
                    backend,
                    next_id()
                )
            );
            assert_counted(
                &delta,
                &[
                    (Counter::Tx, 1),
                    (Counter::LruMiss, 1),
                    (Counter::FragFirst, 1),
                ],
            );
            for later in [middle, last] {
                let (action, out, delta) = run(f, &later);
                assert_eq!(action, XdpAction::Tx);
                assert_eq!(
                    out,
                    expected_ipip_with_id(
                        &later,
                        14,
                        f.lb_mac,
                        NEXT_HOP_MAC,
                        LB_ADDR,
                        backend,
                        next_id()
                    )
                );
                assert_counted(&delta, &[(Counter::Tx, 1), (Counter::Fragment, 1)]);
            }
        }

        // A later fragment of a datagram whose first fragment never came.
        let orphan = fragment(f.lb_mac, 0x0999, 3, false, b"lost");
        let (action, out, delta) = run(f, &orphan);
        assert_eq!(action, XdpAction::Drop);
        assert_eq!(out, orphan);
        assert_counted(&delta, &[(Counter::Drop, 1), (Counter::FragOrphan, 1)]);
        // Its first fragment arriving afterwards is balanced like any other.
        let first_payload = udp_first_fragment_payload(6000, 53, 24);
        let first = fragment(f.lb_mac, 0x0999, 0, true, &first_payload);
        assert_eq!(run(f, &first).0, XdpAction::Tx);
    });
}

#[test]
fn fragmentation_needed_is_rate_limited_per_cpu_and_can_be_switched_off() {
    in_lab("icmprate", |f| {
        stay_on_cpu0();
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        assert_eq!(f.dataplane.icmp().unwrap(), IcmpSettings::default());
        // One a second after a burst of 3: the test's packets come far faster.
        f.dataplane
            .set_icmp(&IcmpSettings {
                frag_needed: true,
                per_second: 1,
                burst: 3,
            })
            .unwrap();
        let over = sized_tcp_frame(f.lb_mac, client(40000), vip(80), 1481, true, None);
        for i in 0..3 {
            let (action, out, _) = run(f, &over);
            assert_eq!(action, XdpAction::Tx, "reply {i} of the burst");
            assert_eq!(out, expected_frag_needed(&over, 14, 1480));
        }
        for _ in 0..5 {
            let (action, _, delta) = run(f, &over);
            assert_eq!(action, XdpAction::Drop);
            assert_counted(
                &delta,
                &[
                    (Counter::Drop, 1),
                    (Counter::LruHit, 1),
                    (Counter::FragNeeded, 1),
                    (Counter::IcmpSuppressed, 1),
                ],
            );
        }
        let counters = f.dataplane.counters().unwrap();
        assert_eq!(counters.get(Counter::IcmpFragNeeded), 3);
        assert_eq!(counters.get(Counter::IcmpSuppressed), 5);

        // Switched off: dropped without an answer, as a path with no PMTUD would.
        f.dataplane
            .set_icmp(&IcmpSettings {
                frag_needed: false,
                ..IcmpSettings::default()
            })
            .unwrap();
        let (action, _, delta) = run(f, &over);
        assert_eq!(action, XdpAction::Drop);
        assert_counted(
            &delta,
            &[
                (Counter::Drop, 1),
                (Counter::LruHit, 1),
                (Counter::FragNeeded, 1),
            ],
        );
    });
}
