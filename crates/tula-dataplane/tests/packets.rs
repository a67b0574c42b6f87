//! Packet in, packet out: the balancer run through BPF_PROG_TEST_RUN on frames
//! built with etherparse, its output compared byte for byte with what we
//! build independently here. Each test has its own namespace (see support).

mod support;

use etherparse::{IpDscp, IpEcn, IpHeaders, Ipv4Header, PacketBuilder};
use support::*;
use tula_dataplane::{Backend, Counter, Dsr, InterfaceSpec, Scheduler, VipSpec, Vlan, XdpAction};

#[test]
fn l3_dsr_encapsulates_tcp_and_udp_byte_for_byte() {
    in_lab("l3", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        f.add_vip(vip_key(53, UDP), Dsr::L3Ipip, Scheduler::Maglev, &ring);

        for frame in [
            tcp_frame(f.lb_mac, client(40000), vip(80)),
            udp_frame(f.lb_mac, client(40001), vip(53)),
        ] {
            let (action, out, delta) = run(f, &frame);
            assert_eq!(action, XdpAction::Tx);
            // Out of lb0 to the next hop's MAC: the backend is routed through 198.18.0.2.
            let expected = expected_ipip(
                &frame,
                14,
                f.lb_mac,
                NEXT_HOP_MAC,
                LB_ADDR,
                routed_backend(3),
            );
            assert_eq!(out, expected);
            assert_eq!(rfc1071(&out[14..34]), 0, "outer header checksum");
            assert_counted(&delta, &[(Counter::Tx, 1), (Counter::LruMiss, 1)]);
        }
        let bytes = (tcp_frame(f.lb_mac, client(1), vip(80)).len()
            + udp_frame(f.lb_mac, client(1), vip(53)).len()) as u64;
        let vip_traffic = f.dataplane.vip_traffic(1).unwrap();
        assert_eq!((vip_traffic.packets, vip_traffic.bytes), (2, bytes));
        let backend_traffic = f.dataplane.backend_traffic(3).unwrap();
        assert_eq!((backend_traffic.packets, backend_traffic.bytes), (2, bytes));
    });
}

#[test]
fn l2_dsr_rewrites_only_the_mac_addresses() {
    in_lab("l2", |f| {
        f.add_backend(4, L2_BACKEND);
        let ring = f.ring_of(4);
        f.add_vip(vip_key(80, TCP), Dsr::L2, Scheduler::Maglev, &ring);
        f.add_vip(vip_key(53, UDP), Dsr::L2, Scheduler::Maglev, &ring);

        for frame in [
            tcp_frame(f.lb_mac, client(40000), vip(80)),
            udp_frame(f.lb_mac, client(40001), vip(53)),
        ] {
            let (action, out, delta) = run(f, &frame);
            assert_eq!(action, XdpAction::Tx);
            let mut expected = frame.clone();
            expected[0..6].copy_from_slice(&L2_BACKEND_MAC);
            expected[6..12].copy_from_slice(&f.lb_mac);
            assert_eq!(out, expected);
            assert_counted(&delta, &[(Counter::Tx, 1), (Counter::LruMiss, 1)]);
        }
    });
}

#[test]
fn ipv4_options_tos_and_df_survive_and_are_copied_outward() {
    in_lab("opts", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let frame = options_frame(f.lb_mac, None);
        assert_eq!(frame[14] & 0x0f, 7, "the inner header has 28 bytes");

        let (action, out, _) = run(f, &frame);
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(
            out,
            expected_ipip(
                &frame,
                14,
                f.lb_mac,
                NEXT_HOP_MAC,
                LB_ADDR,
                routed_backend(3)
            )
        );
        let (outer, _) = Ipv4Header::from_slice(&out[14..]).unwrap();
        assert_eq!(
            (outer.dscp.value(), outer.ecn.value(), outer.dont_fragment),
            (46, 1, true)
        );
        assert_eq!(rfc1071(&out[14..34]), 0);
    });
}

#[test]
fn outer_checksum_is_right_for_many_lengths_and_tos_values() {
    in_lab("csum", |f| {
        stay_on_cpu0(); // the outer IP IDs of the packets without DF count on one CPU
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(0, UDP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        for (i, payload_len) in [0usize, 1, 17, 255, 256, 1000, 1400]
            .into_iter()
            .enumerate()
        {
            let mut ip = Ipv4Header::new(
                0,
                1,
                etherparse::IpNumber::UDP,
                CLIENT.octets(),
                VIP.octets(),
            )
            .unwrap();
            ip.dscp = IpDscp::try_new((i * 9) as u8).unwrap();
            ip.ecn = IpEcn::try_new((i % 4) as u8).unwrap();
            ip.dont_fragment = i % 2 == 0;
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(CLIENT_MAC, f.lb_mac)
                .ip(IpHeaders::Ipv4(ip, Default::default()))
                .udp(1000 + i as u16, 9)
                .write_to_vec(&mut frame, &vec![0xa5; payload_len])
                .unwrap();
            let (action, out, _) = run(f, &frame);
            assert_eq!(action, XdpAction::Tx);
            assert_eq!(rfc1071(&out[14..34]), 0, "payload {payload_len}");
            assert_eq!(
                out,
                expected_ipip_with_id(
                    &frame,
                    14,
                    f.lb_mac,
                    NEXT_HOP_MAC,
                    LB_ADDR,
                    routed_backend(3),
                    // IDs 1, 2, 3 for the packets without DF (odd i); 0 with DF.
                    if i % 2 == 0 { 0 } else { (i as u16 + 1) / 2 },
                )
            );
        }
    });
}

#[test]
fn vlan_tag_is_kept_and_its_vid_rewritten_for_the_egress_vlan() {
    in_lab("vlan", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        // No VLAN devices on this kernel: pretend lb0 is VLAN 100 on top of itself.
        let vlan = InterfaceSpec {
            vlan: Some(Vlan {
                id: 100,
                lower: "lb0".into(),
            }),
            ..InterfaceSpec::default()
        };
        f.dataplane.set_interface("lb0", &vlan).unwrap();

        let mut frame = options_frame(f.lb_mac, Some(7));
        frame[14] |= 0xa0; // priority 5 must survive the VID rewrite
        let (action, out, delta) = run(f, &frame);
        assert_eq!(action, XdpAction::Tx);
        let mut expected = expected_ipip(
            &frame,
            18,
            f.lb_mac,
            NEXT_HOP_MAC,
            LB_ADDR,
            routed_backend(3),
        );
        expected[14..16].copy_from_slice(&(0xa000u16 | 100).to_be_bytes());
        assert_eq!(out, expected);
        assert_eq!(rfc1071(&out[18..38]), 0);
        assert_counted(&delta, &[(Counter::Tx, 1), (Counter::LruMiss, 1)]);

        // Untagged in, tagged egress: the kernel gets the IPIP packet with the original L2 header.
        let untagged = tcp_frame(f.lb_mac, client(40001), vip(80));
        let (action, out, delta) = run(f, &untagged);
        assert_eq!(action, XdpAction::Pass);
        assert_eq!(
            out,
            expected_ipip(
                &untagged,
                14,
                CLIENT_MAC,
                f.lb_mac,
                LB_ADDR,
                routed_backend(3)
            )
        );
        assert_counted(
            &delta,
            &[
                (Counter::Pass, 1),
                (Counter::LruMiss, 1),
                (Counter::VlanMismatch, 1),
            ],
        );

        // Tagged in, untagged egress: the same. (The same SYN again, behind a
        // tag and IPv4 options: read as a SYN, so placed anew, and held like the first.)
        f.dataplane
            .set_interface("lb0", &InterfaceSpec::default())
            .unwrap();
        let (action, out, delta) = run(f, &frame);
        assert_eq!(action, XdpAction::Pass);
        assert_eq!(
            out,
            expected_ipip(&frame, 18, CLIENT_MAC, f.lb_mac, LB_ADDR, routed_backend(3))
        );
        assert_counted(
            &delta,
            &[
                (Counter::Pass, 1),
                (Counter::LruMiss, 1),
                (Counter::VlanMismatch, 1),
            ],
        );
    });
}

#[test]
fn traffic_that_is_not_for_a_vip_passes_untouched() {
    in_lab("notvip", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let other_addr = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(203, 0, 113, 11), 80);
        let frames = [
            tcp_frame(f.lb_mac, client(40000), vip(81)), // VIP address, other port
            udp_frame(f.lb_mac, client(40000), vip(80)), // VIP address and port, other protocol
            tcp_frame(f.lb_mac, client(40000), other_addr), // other address
        ];
        for frame in frames {
            let (action, out, delta) = run(f, &frame);
            assert_eq!(action, XdpAction::Pass);
            assert_eq!(out, frame);
            assert_counted(&delta, &[(Counter::Pass, 1), (Counter::NotVip, 1)]);
        }
    });
}

fn arp_request(lb_mac: [u8; 6]) -> Vec<u8> {
    let _ = lb_mac;
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[0x08, 0x06]); // ARP
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&CLIENT.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&VIP.octets());
    frame
}

#[test]
fn arp_and_ipv6_to_no_vip_pass_untouched() {
    in_lab("arp6", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(0, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let mut ipv6 = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, f.lb_mac)
            .ipv6(
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .tcp(40000, 80, 1, 1000)
            .write_to_vec(&mut ipv6, b"v6")
            .unwrap();
        for (frame, reason) in [(arp_request(f.lb_mac), Counter::NotIpv4), (ipv6, Counter::NotVip)] {
            let (action, out, delta) = run(f, &frame);
            assert_eq!(action, XdpAction::Pass);
            assert_eq!(out, frame);
            assert_counted(&delta, &[(Counter::Pass, 1), (reason, 1)]);
        }
    });
}

/// Every prefix of a frame gets a defined verdict and leaves unchanged, but
/// the whole frame. `l3` is where IPv4 starts, `l4` where TCP starts. Once the
/// IPv4 header is whole, a prefix is a datagram shorter than its total length
/// says: malformed, like a cut TCP header.
fn check_truncations(f: &Fixture, frame: &[u8], l3: usize, l4: usize, l4_verdict: XdpAction) {
    for len in 0..=frame.len() {
        let prefix = &frame[..len];
        if len < 14 {
            // The kernel refuses test runs shorter than an Ethernet header; no driver hands XDP one either.
            assert!(
                f.dataplane.test_run(prefix, Some(f.ingress)).is_err(),
                "length {len}"
            );
            continue;
        }
        let (action, out, delta) = run(f, prefix);
        let (verdict, reason) = if len < l3 {
            (XdpAction::Pass, Counter::NotIpv4) // runt VLAN tag
        } else if len < l4 {
            (XdpAction::Pass, Counter::Malformed) // IPv4 header or options cut: address unknown
        } else if len < frame.len() {
            (l4_verdict, Counter::Malformed)
        } else {
            (XdpAction::Tx, Counter::Tx)
        };
        assert_eq!(action, verdict, "length {len}");
        if len < frame.len() {
            assert_eq!(out, prefix, "length {len}");
            let verdict_counter = if verdict == XdpAction::Pass {
                Counter::Pass
            } else {
                Counter::Drop
            };
            assert_counted(&delta, &[(verdict_counter, 1), (reason, 1)]);
        } else {
            assert_eq!(delta.get(Counter::Tx), 1);
        }
    }
}

#[test]
fn truncated_frames_get_a_defined_verdict_at_every_length() {
    in_lab("trunc", |f| {
        f.add_backend(3, routed_backend(3));
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let plain = tcp_frame(f.lb_mac, client(40000), vip(80));
        let tagged = options_frame(f.lb_mac, Some(7));
        // Without an all-ports VIP a cut TCP header cannot be known to be VIP traffic: passed.
        check_truncations(f, &plain, 14, 34, XdpAction::Pass);
        f.dataplane
            .set_interface(
                "lb0",
                &InterfaceSpec {
                    vlan: Some(Vlan {
                        id: 7,
                        lower: "lb0".into(),
                    }),
                    ..InterfaceSpec::default()
                },
            )
            .unwrap();
        check_truncations(f, &tagged, 18, 18 + 28, XdpAction::Pass);

        // With one, it is: dropped.
        f.add_vip(vip_key(0, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        check_truncations(f, &tagged, 18, 18 + 28, XdpAction::Drop);
        f.dataplane
            .set_interface("lb0", &InterfaceSpec::default())
            .unwrap();
        check_truncations(f, &plain, 14, 34, XdpAction::Drop);
    });
}

#[test]
fn invalid_ipv4_headers_are_malformed() {
    in_lab("badip", |f| {
        let frame = tcp_frame(f.lb_mac, client(40000), vip(80));
        for (byte, value) in [(14, 0x44u8), (14, 0x65), (14, 0x4f)] {
            // IHL 4, version 6, IHL 15 (options longer than the frame)
            let mut bad = frame.clone();
            bad[byte] = value;
            let (action, out, delta) = run(f, &bad);
            assert_eq!(action, XdpAction::Pass);
            assert_eq!(out, bad);
            assert_counted(&delta, &[(Counter::Pass, 1), (Counter::Malformed, 1)]);
        }
    });
}

#[test]
fn an_all_ports_vip_catches_what_no_exact_vip_does() {
    in_lab("port0", |f| {
        f.add_backend(3, routed_backend(3));
        f.add_backend(5, routed_backend(5));
        let (ring3, ring5) = (f.ring_of(3), f.ring_of(5));
        f.dataplane
            .set_vip(
                &vip_key(0, TCP),
                &VipSpec {
                    id: 1,
                    dsr: Dsr::L3Ipip,
                    scheduler: Scheduler::Maglev,
                    icmp_echo: true,
                },
                &ring3,
            )
            .unwrap();
        f.dataplane
            .set_vip(
                &vip_key(443, TCP),
                &VipSpec {
                    id: 2,
                    dsr: Dsr::L3Ipip,
                    scheduler: Scheduler::Maglev,
                    icmp_echo: true,
                },
                &ring5,
            )
            .unwrap();
        for (port, backend) in [(80, 3), (443, 5), (22, 3), (0, 3)] {
            let frame = tcp_frame(f.lb_mac, client(40000 + port), vip(port));
            let (action, out, _) = run(f, &frame);
            assert_eq!(action, XdpAction::Tx, "port {port}");
            assert_eq!(
                out,
                expected_ipip(
                    &frame,
                    14,
                    f.lb_mac,
                    NEXT_HOP_MAC,
                    LB_ADDR,
                    routed_backend(backend)
                ),
                "port {port}"
            );
        }
        assert_eq!(f.dataplane.vip_traffic(1).unwrap().packets, 3);
        assert_eq!(f.dataplane.vip_traffic(2).unwrap().packets, 1);
    });
}

#[test]
fn a_next_hop_without_neighbour_entry_is_handed_to_the_kernel_not_dropped() {
    in_lab("noneigh", |f| {
        f.add_backend(6, UNRESOLVED);
        let ring = f.ring_of(6);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let frame = tcp_frame(f.lb_mac, client(40000), vip(80));
        let (action, out, delta) = run(f, &frame);
        // Encapsulated, original MACs: the kernel routes it and resolves the neighbour.
        assert_eq!(action, XdpAction::Pass);
        assert_eq!(
            out,
            expected_ipip(&frame, 14, CLIENT_MAC, f.lb_mac, LB_ADDR, UNRESOLVED)
        );
        assert_counted(
            &delta,
            &[
                (Counter::Pass, 1),
                (Counter::LruMiss, 1),
                (Counter::FibNoNeigh, 1),
            ],
        );
        assert_eq!(f.dataplane.backend_traffic(6).unwrap().packets, 1);

        // L2 DSR cannot be finished by the kernel: dropped, and counted as such.
        f.add_vip(vip_key(81, TCP), Dsr::L2, Scheduler::Maglev, &ring);
        let frame = tcp_frame(f.lb_mac, client(40000), vip(81));
        let (action, _, delta) = run(f, &frame);
        assert_eq!(action, XdpAction::Drop);
        assert_counted(
            &delta,
            &[
                (Counter::Drop, 1),
                (Counter::LruMiss, 1),
                (Counter::FibNoNeigh, 1),
                (Counter::L2Unroutable, 1),
            ],
        );
    });
}

#[test]
fn drops_are_counted_by_reason() {
    in_lab("drops", |f| {
        f.add_backend(7, BLACKHOLED);
        f.add_backend(3, routed_backend(3));
        let lb_mac = f.lb_mac;
        let frame = |port| tcp_frame(lb_mac, client(40000), vip(port));

        // No route to the backend.
        let ring = f.ring_of(7);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let (action, _, delta) = run(f, &frame(80));
        assert_eq!(action, XdpAction::Drop);
        assert_counted(
            &delta,
            &[
                (Counter::Drop, 1),
                (Counter::LruMiss, 1),
                (Counter::FibFail, 1),
            ],
        );

        // A VIP with no backends.
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &[]);
        let (action, _, delta) = run(f, &tcp_frame(f.lb_mac, client(40001), vip(80)));
        assert_eq!(action, XdpAction::Drop);
        assert_counted(
            &delta,
            &[
                (Counter::Drop, 1),
                (Counter::LruMiss, 1),
                (Counter::NoBackend, 1),
            ],
        );

        // A ring naming a backend that is not alive.
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        f.dataplane
            .set_backend(
                3,
                &Backend {
                    addr: routed_backend(3).into(),
                    alive: false,
                },
            )
            .unwrap();
        let (action, _, delta) = run(f, &tcp_frame(f.lb_mac, client(40002), vip(80)));
        assert_eq!(action, XdpAction::Drop);
        assert_counted(
            &delta,
            &[
                (Counter::Drop, 1),
                (Counter::LruMiss, 1),
                (Counter::NoBackend, 1),
            ],
        );

        // Egress interface not registered.
        f.add_backend(3, routed_backend(3));
        f.dataplane.remove_interface("lb0").unwrap();
        let (action, _, delta) = run(f, &tcp_frame(f.lb_mac, client(40003), vip(80)));
        assert_eq!(action, XdpAction::Drop);
        assert_counted(
            &delta,
            &[
                (Counter::Drop, 1),
                (Counter::LruMiss, 1),
                (Counter::NoIface, 1),
            ],
        );
    });
}

#[test]
fn source_hash_sends_every_flow_of_a_client_to_one_backend() {
    in_lab("srchash", |f| {
        // A ring with a different backend in every slot shows which slot was used.
        let size = f.dataplane.ring_size();
        let ring: Vec<u32> = (0..size).map(|slot| slot % 50).collect();
        for id in 0..50 {
            f.add_backend(id, routed_backend(id as u8 + 1));
        }
        f.add_vip(vip_key(80, TCP), Dsr::L3Ipip, Scheduler::SourceHash, &ring);
        let expected = ring[tula_dataplane::ring_index(tula_dataplane::source_hash(CLIENT), size)];
        for port in 40000..40020 {
            let frame = tcp_frame(f.lb_mac, client(port), vip(80));
            let (action, out, _) = run(f, &frame);
            assert_eq!(action, XdpAction::Tx);
            assert_eq!(
                out,
                expected_ipip(
                    &frame,
                    14,
                    f.lb_mac,
                    NEXT_HOP_MAC,
                    LB_ADDR,
                    routed_backend(expected as u8 + 1)
                )
            );
        }
    });
}
