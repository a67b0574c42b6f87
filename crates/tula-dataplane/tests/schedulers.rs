//! The round-robin schedulers: a new flow takes the ring slot at its CPU's
//! cursor, which then moves on by one; the ring (`round_robin_ring`) makes
//! consecutive new flows rotate over the backends in proportion to their
//! weights; the connection table keeps each flow where it started.

mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use support::*;
use tula_dataplane::{round_robin_ring, Counter, Dsr, Protocol, Scheduler, VipSpec, XdpAction};
use tula_maglev::RingBackend;

/// Backends `ids`, routed, with their weights, as the ring builder takes them.
fn members(f: &mut Fixture, weights: &[(u32, u32)]) -> Vec<RingBackend> {
    weights
        .iter()
        .map(|&(id, weight)| {
            f.add_backend(id, routed_backend(id as u8));
            RingBackend {
                id,
                key: routed_backend(id as u8).to_string(),
                weight,
            }
        })
        .collect()
}

/// Sends `frame` and returns the id of the routed backend it was encapsulated to.
fn backend_of(f: &Fixture, frame: &[u8]) -> u32 {
    let (action, out) = f.dataplane.test_run(frame, Some(f.ingress)).unwrap();
    assert_eq!(action, XdpAction::Tx);
    let outer_dst = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
    assert_eq!(
        &outer_dst.octets()[..3],
        &[198, 18, 100],
        "sent to {outer_dst}"
    );
    u32::from(outer_dst.octets()[3])
}

/// Opens `count` new flows (SYNs from distinct client ports, starting at
/// `first_port`) and returns the backend id each went to, in order.
fn open_flows(f: &Fixture, first_port: u16, count: u16) -> Vec<u32> {
    (first_port..first_port + count)
        .map(|port| backend_of(f, &syn_frame(f.lb_mac, client(port), vip(80))))
        .collect()
}

fn tally(ids: &[u32]) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for &id in ids {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

#[test]
fn round_robin_rotates_consecutive_new_flows_over_every_backend() {
    in_lab("rr", |f| {
        stay_on_cpu0();
        let backends = members(f, &[(1, 1), (2, 1), (3, 1)]);
        let ring = round_robin_ring(&backends, f.dataplane.ring_size());
        f.add_vip(
            vip_key(80, Protocol::Tcp),
            Dsr::L3Ipip,
            Scheduler::RoundRobin,
            &ring,
        );
        let before = f.dataplane.counters().unwrap();
        let chosen = open_flows(f, 10_000, 300);
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert_eq!(delta.get(Counter::LruMiss), 300);

        // Flow k takes slot k: the cursor starts at 0 and moves one slot per new flow.
        let walk: Vec<u32> = (0..300).map(|k| ring[k % ring.len()]).collect();
        assert_eq!(chosen, walk);
        assert_eq!(&chosen[..6], &[1, 2, 3, 1, 2, 3]);
        // 300 flows over 3 backends: 100 each, give or take the wrap of the
        // 251-slot ring (251 = 3 x 83 + 2).
        let counts = tally(&chosen);
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(
            counts.values().all(|&n| (99..=101).contains(&n)),
            "{counts:?}"
        );
    });
}

#[test]
fn weighted_round_robin_honours_weights_1_to_3() {
    in_lab("wrr", |f| {
        stay_on_cpu0();
        let backends = members(f, &[(1, 1), (2, 3)]);
        let ring = round_robin_ring(&backends, f.dataplane.ring_size());
        f.add_vip(
            vip_key(80, Protocol::Tcp),
            Dsr::L3Ipip,
            Scheduler::WeightedRoundRobin,
            &ring,
        );
        let chosen = open_flows(f, 10_000, 400);
        assert_eq!(&chosen[..8], &[2, 1, 2, 2, 2, 1, 2, 2]);
        let counts = tally(&chosen);
        assert_eq!(counts, BTreeMap::from([(1, 100), (2, 300)]));
        // Never more than three flows in a row to the heavier backend.
        assert!(!chosen.windows(4).any(|w| w.iter().all(|&id| id == 2)));
    });
}

#[test]
fn a_round_robin_flow_keeps_its_backend() {
    in_lab("rrsticky", |f| {
        stay_on_cpu0();
        let backends = members(f, &[(1, 1), (2, 1), (3, 1)]);
        let ring = round_robin_ring(&backends, f.dataplane.ring_size());
        f.add_vip(
            vip_key(80, Protocol::Tcp),
            Dsr::L3Ipip,
            Scheduler::RoundRobin,
            &ring,
        );
        let first = backend_of(f, &syn_frame(f.lb_mac, client(5000), vip(80)));
        assert_eq!(first, 1);
        // Other new flows move the cursor on ...
        assert_eq!(open_flows(f, 6000, 4), [2, 3, 1, 2]);
        // ... but the flow's own packets stay on its backend.
        let before = f.dataplane.counters().unwrap();
        for _ in 0..5 {
            assert_eq!(
                backend_of(f, &tcp_frame(f.lb_mac, client(5000), vip(80))),
                1
            );
        }
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert_eq!(
            (delta.get(Counter::LruHit), delta.get(Counter::LruMiss)),
            (5, 0)
        );
        // UDP too: a datagram's flow is placed once.
        f.add_vip(
            vip_key(53, Protocol::Udp),
            Dsr::L3Ipip,
            Scheduler::RoundRobin,
            &ring,
        );
        let first = backend_of(f, &udp_frame(f.lb_mac, client(5000), vip(53)));
        assert_eq!(first, 3, "the cursor is the VIP id's, shared by both keys");
        for _ in 0..3 {
            assert_eq!(
                backend_of(f, &udp_frame(f.lb_mac, client(5000), vip(53))),
                first
            );
        }
        // A SYN sent again (a retransmission) is a new connection: it takes the next turn.
        let before = f.dataplane.counters().unwrap();
        assert_eq!(
            backend_of(f, &syn_frame(f.lb_mac, client(5000), vip(80))),
            1
        );
        assert_eq!(
            backend_of(f, &syn_frame(f.lb_mac, client(5000), vip(80))),
            2
        );
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert_eq!(delta.get(Counter::LruReopen), 2);
    });
}

#[test]
fn schedulers_read_back_as_set_and_an_empty_round_robin_ring_drops() {
    in_lab("rrspec", |f| {
        for (port, scheduler) in [
            (80, Scheduler::Maglev),
            (81, Scheduler::SourceHash),
            (82, Scheduler::RoundRobin),
            (83, Scheduler::WeightedRoundRobin),
        ] {
            let spec = VipSpec {
                id: u32::from(port - 79),
                dsr: Dsr::L2,
                scheduler,
                icmp_echo: true,
            };
            let key = vip_key(port, Protocol::Tcp);
            f.dataplane.set_vip(&key, &spec, &[]).unwrap();
            let held = f.dataplane.vips().unwrap();
            assert_eq!(held.iter().find(|(k, _)| *k == key), Some(&(key, spec)));
        }
        // No backend in the ring: a new flow is dropped.
        let frame = syn_frame(f.lb_mac, client(7000), vip(82));
        let before = f.dataplane.counters().unwrap();
        let (action, _) = f.dataplane.test_run(&frame, Some(f.ingress)).unwrap();
        assert_eq!(action, XdpAction::Drop);
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert_eq!(delta.get(Counter::NoBackend), 1);
    });
}
