//! The connection table: established flows keep their backend when the ring
//! changes; a flow stuck to a backend that is no longer alive is re-hashed;
//! a TCP SYN is a new connection whatever the table holds for its 5-tuple,
//! and waits in its CPU's SYN table until the connection's next packet.

mod support;

use support::*;

use tula_dataplane::{Backend, Counter, Dsr, Flow, Protocol, Scheduler, XdpAction};

fn flow(port: u16) -> Flow {
    Flow {
        client: client(port),
        vip: vip(80),
        protocol: Protocol::Tcp,
    }
}

/// Runs one segment (ACK, data) of `port`'s flow and returns the backend address it was sent to.
fn send(f: &Fixture, port: u16) -> std::net::Ipv4Addr {
    send_frame(f, &tcp_frame(f.lb_mac, client(port), vip(80)))
}

fn send_frame(f: &Fixture, frame: &[u8]) -> std::net::Ipv4Addr {
    let (action, out) = f.dataplane.test_run(frame, Some(f.ingress)).unwrap();
    assert_eq!(action, XdpAction::Tx);
    std::net::Ipv4Addr::new(out[30], out[31], out[32], out[33])
}

#[test]
fn removing_flows_leaves_the_others_of_their_bucket_found() {
    in_lab("connrm", |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        let key = vip_key(80, Protocol::Tcp);
        let ring1 = f.ring_of(1);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring1);
        // Two flows a bucket on average, so removals open gaps before other flows.
        let ports: Vec<u16> = (0..f.dataplane.conn_table_capacity() / 4).map(|i| 1000 + i as u16).collect();
        for &port in &ports {
            send(f, port);
        }
        let held: std::collections::HashSet<Flow> = f.dataplane.conns().unwrap().into_iter().map(|(flow, _)| flow).collect();
        for &port in ports.iter().step_by(2) {
            f.dataplane.remove_conn(&flow(port)).unwrap();
        }
        // A flow the table lost would follow the new ring to backend 2.
        let ring2 = f.ring_of(2);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring2);
        let kept: Vec<u16> = ports.iter().skip(1).step_by(2).copied().filter(|p| held.contains(&flow(*p))).collect();
        assert!(kept.len() > ports.len() / 3, "{} of {} flows kept", kept.len(), ports.len());
        for port in kept {
            assert_eq!(send(f, port), routed_backend(1), "flow of port {port} lost");
        }
    });
}

#[test]
fn established_flows_keep_their_backend_while_new_flows_follow_the_new_ring() {
    in_lab("sticky", |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        let key = vip_key(80, Protocol::Tcp);
        let ring1 = f.ring_of(1);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring1);
        assert_eq!(send(f, 1000), routed_backend(1));
        assert_eq!(
            f.dataplane
                .conn(&flow(1000))
                .unwrap()
                .map(|c| (c.backend, c.vip)),
            Some((1, 1))
        );

        // The backend set changes: backend 2 takes over the whole ring.
        let ring2 = f.ring_of(2);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring2);
        let before = f.dataplane.counters().unwrap();
        assert_eq!(send(f, 1000), routed_backend(1), "established flow moved");
        assert_eq!(
            send(f, 1001),
            routed_backend(2),
            "new flow ignored the new ring"
        );
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert_eq!(
            (delta.get(Counter::LruHit), delta.get(Counter::LruMiss)),
            (1, 1)
        );

        let mut flows = f.dataplane.conns().unwrap();
        flows.sort_by_key(|(flow, _)| flow.client.port());
        let flows: Vec<(u16, u32)> = flows
            .iter()
            .map(|(flow, conn)| (flow.client.port(), conn.backend))
            .collect();
        assert_eq!(flows, vec![(1000, 1), (1001, 2)]);
    });
}

#[test]
fn a_flow_whose_backend_died_is_rehashed_onto_the_ring() {
    in_lab("stale", |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        let key = vip_key(80, Protocol::Tcp);
        let ring1 = f.ring_of(1);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring1);
        assert_eq!(send(f, 1000), routed_backend(1));

        // Backend 1 goes down; user space rebuilds the ring without it.
        f.dataplane
            .set_backend(
                1,
                &Backend {
                    addr: routed_backend(1).into(),
                    alive: false,
                },
            )
            .unwrap();
        let ring2 = f.ring_of(2);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring2);
        let before = f.dataplane.counters().unwrap();
        assert_eq!(send(f, 1000), routed_backend(2));
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert_eq!(
            (
                delta.get(Counter::LruStale),
                delta.get(Counter::LruHit),
                delta.get(Counter::LruMiss)
            ),
            (1, 0, 0)
        );
        assert_eq!(
            f.dataplane.conn(&flow(1000)).unwrap().map(|c| c.backend),
            Some(2)
        );

        // And it sticks to the new one even when backend 1 comes back.
        f.add_backend(1, routed_backend(1));
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring1);
        assert_eq!(send(f, 1000), routed_backend(2));

        // Forgetting the flow sends it to the ring again.
        f.dataplane.remove_conn(&flow(1000)).unwrap();
        assert_eq!(send(f, 1000), routed_backend(1));
    });
}

#[test]
fn removing_a_vip_passes_its_traffic_and_frees_its_ring() {
    in_lab("rmvip", |f| {
        f.add_backend(1, routed_backend(1));
        let key = vip_key(80, Protocol::Tcp);
        let ring = f.ring_of(1);
        // More ring swaps than there are rings: freed rings must come back,
        // and every swap writes a ring no packet is reading.
        let mut used = std::collections::HashSet::new();
        let mut previous = None;
        for i in 0..3 * (f.dataplane.max_vips() + 16) {
            let ring: Vec<u32> = (0..f.dataplane.ring_size())
                .map(|slot| (slot + i) % 2 + 1)
                .collect();
            f.add_backend(2, routed_backend(2));
            f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring);
            let (index, slots) = f
                .dataplane
                .vip_ring(&key)
                .unwrap()
                .expect("the VIP has a ring");
            assert_eq!(slots, ring, "swap {i}");
            assert_ne!(Some(index), previous, "swap {i} rewrote the live ring");
            previous = Some(index);
            used.insert(index);
        }
        assert_eq!(
            used.len() as u32,
            f.dataplane.max_vips() + 16,
            "every ring gets used in turn"
        );
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring);
        assert_eq!(send(f, 1000), routed_backend(1));
        f.dataplane.remove_vip(&key).unwrap();
        assert!(f.dataplane.vips().unwrap().is_empty());
        let frame = tcp_frame(f.lb_mac, client(1000), vip(80));
        let (action, out) = f.dataplane.test_run(&frame, Some(f.ingress)).unwrap();
        assert_eq!((action, out), (XdpAction::Pass, frame));
        assert!(f.dataplane.remove_vip(&key).is_err(), "removing it twice");
        assert_eq!(f.dataplane.vip_ring(&key).unwrap(), None);
    });
}

#[test]
fn a_syn_on_a_drained_backends_old_5_tuple_goes_to_an_active_backend() {
    in_lab("syn", |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        let key = vip_key(80, Protocol::Tcp);
        let ring1 = f.ring_of(1);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring1);
        let syn = syn_frame(f.lb_mac, client(1000), vip(80));
        assert_eq!(send_frame(f, &syn), routed_backend(1));

        // Backend 1 drains: out of the ring, still alive for its flows.
        let ring2 = f.ring_of(2);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring2);
        let before = f.dataplane.counters().unwrap();
        assert_eq!(send(f, 1000), routed_backend(1), "an established segment");
        let syn_ack = tcp_segment(f.lb_mac, client(1000), vip(80), true, Some(1), &[]);
        assert_eq!(
            send_frame(f, &syn_ack),
            routed_backend(1),
            "SYN with ACK set opens nothing"
        );
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert_eq!(
            (delta.get(Counter::LruHit), delta.get(Counter::LruReopen)),
            (2, 0)
        );

        // The client reuses its port for a new connection: the SYN goes by the
        // ring and waits in this CPU's SYN table; the table still has the old entry.
        let counted = |f: &Fixture, before: &tula_dataplane::Counters| {
            let delta = f.dataplane.counters().unwrap().since(before);
            [Counter::LruReopen, Counter::LruHit, Counter::LruMiss].map(|c| delta.get(c))
        };
        let before = f.dataplane.counters().unwrap();
        assert_eq!(send_frame(f, &syn), routed_backend(2));
        assert_eq!(counted(f, &before), [0, 0, 1], "a SYN is placed like a new flow");
        assert_eq!(f.dataplane.conn(&flow(1000)).unwrap().map(|c| c.backend), Some(1));

        // Its next packet follows the SYN, and replaces the entry.
        let before = f.dataplane.counters().unwrap();
        assert_eq!(send(f, 1000), routed_backend(2), "the handshake's ACK");
        assert_eq!(counted(f, &before), [1, 0, 0]);
        assert_eq!(
            f.dataplane.conn(&flow(1000)).unwrap().map(|c| c.backend),
            Some(2),
            "the entry is replaced"
        );
        assert_eq!(
            send(f, 1000),
            routed_backend(2),
            "and the new connection sticks"
        );
    });
}

#[test]
fn a_flood_of_four_times_the_table_keeps_active_flows_and_idle_ones_follow_the_ring() {
    in_lab("flood", |f| {
        for id in 1..=3 {
            f.add_backend(id, routed_backend(id as u8));
        }
        let key = vip_key(80, Protocol::Tcp);
        let size = f.dataplane.ring_size();
        let ring_of = |n: u32| -> Vec<u32> { (0..size).map(|slot| slot % n + 1).collect() };
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring_of(2));
        let (active, idle): (Vec<u16>, Vec<u16>) = ((2000..2128).collect(), (3000..3064).collect());
        let first: std::collections::HashMap<u16, std::net::Ipv4Addr> = active
            .iter()
            .chain(&idle)
            .map(|&port| (port, send(f, port)))
            .collect();

        // Random sources, four times the table; every 16th packet is an active
        // flow's. An ACK flood: SYNs would wait in the SYN table, not here.
        let flood = 4 * f.dataplane.conn_table_capacity() as usize;
        let before = f.dataplane.counters().unwrap();
        for i in 0..flood {
            if i == flood / 2 {
                // The ring changes halfway: a third backend takes a share.
                f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring_of(3));
            }
            if i % 16 == 15 {
                let port = active[(i / 16) % active.len()];
                assert_eq!(send(f, port), first[&port], "active flow {port} moved during the flood");
                continue;
            }
            let source = numbered_client(i);
            send_frame(f, &tcp_frame(f.lb_mac, source, vip(80)));
        }
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert!(delta.get(Counter::LruMiss) as usize >= flood * 15 / 16 - 1);

        for &port in &active {
            assert_eq!(send(f, port), first[&port], "active flow {port} moved");
        }
        // An idle flow kept its entry, or the ring of now places it (Maglev).
        let ring = ring_of(3);
        let mut kept = 0;
        for &port in &idle {
            let placed = routed_backend(
                ring[tula_dataplane::ring_index(tula_dataplane::flow_hash(&flow(port)), size) as usize]
                    as u8,
            );
            let to = send(f, port);
            assert!(to == first[&port] || to == placed, "idle flow {port} went to {to}");
            kept += usize::from(to == first[&port] && to != placed);
        }
        println!("idle flows that kept an entry the ring would not give them: {kept} of {}", idle.len());
    });
}

#[test]
fn the_table_lists_and_forgets_flows_and_its_size_is_whole_buckets() {
    in_lab("conntab", |f| {
        f.add_backend(1, routed_backend(1));
        let key = vip_key(80, Protocol::Tcp);
        let ring = f.ring_of(1);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring);
        assert_eq!(f.dataplane.conn_table_capacity() % 8, 0);
        assert!(f.dataplane.conn_table_capacity() >= small_options().conn_table_size);
        for port in 1000..1100 {
            send(f, port);
        }
        let flows = f.dataplane.conns().unwrap();
        assert_eq!(flows.len(), 100);
        assert!(flows.iter().all(|(_, conn)| *conn == tula_dataplane::Conn { backend: 1, vip: 1 }));
        f.dataplane.remove_conn(&flow(1050)).unwrap();
        assert_eq!(f.dataplane.conn(&flow(1050)).unwrap(), None);
        assert_eq!(f.dataplane.conns().unwrap().len(), 99);
        // Removing it again is fine.
        f.dataplane.remove_conn(&flow(1050)).unwrap();
    });
}

#[test]
fn established_flows_gone_quiet_give_way_to_new_flows_in_a_full_bucket() {
    in_lab("quiet", |f| {
        f.add_backend(1, routed_backend(1));
        let key = vip_key(80, Protocol::Tcp);
        let ring = f.ring_of(1);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring);
        // Ten flows of one bucket: the balancer's bucket is the flow hash fastranged.
        let buckets = u64::from(f.dataplane.conn_table_capacity() / 8);
        let bucket = |port: u16| (u64::from(tula_dataplane::flow_hash(&flow(port))) * buckets) >> 32;
        let same: Vec<u16> = (1000..u16::MAX)
            .filter(|&port| bucket(port) == bucket(1000))
            .take(10)
            .collect();
        assert_eq!(same.len(), 10, "ten ports of one bucket");
        let (old, new) = same.split_at(8);
        // Eight established flows (two packets each) fill the bucket, then go quiet.
        for &port in old {
            send(f, port);
            send(f, port);
        }
        // Longer than the hit bit's 256 jiffies at any HZ down to 100.
        std::thread::sleep(std::time::Duration::from_millis(2700));
        // Two new flows arrive: the second must take a quiet flow's way, not the first's.
        send(f, new[0]);
        send(f, new[1]);
        assert!(
            f.dataplane.conn(&flow(new[0])).unwrap().is_some(),
            "a new flow was evicted by another new flow while quiet flows kept the bucket"
        );
        assert!(f.dataplane.conn(&flow(new[1])).unwrap().is_some());
    });
}

#[test]
fn the_kernel_clock_reads_the_tables_last_seen_stamps_as_ages() {
    use std::time::Duration;
    in_lab("ages", |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        let key = vip_key(80, Protocol::Tcp);
        let ring = f.ring_of(1);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let clock = tula_dataplane::KernelClock::calibrate(Duration::from_secs(1)).unwrap();
        let newest = |f: &Fixture, vip_backend| f.dataplane.conn_tally(0).unwrap()[&vip_backend].last_seen;
        // Two flows to backend 1, 1.5 s apart, then one to backend 2.
        send(f, 2000);
        let first = newest(f, (1, 1));
        std::thread::sleep(Duration::from_millis(1500));
        send(f, 2001);
        let ring = f.ring_of(2);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring);
        send(f, 2002);
        // The balancer stamps with bpf_jiffies64(): the clock's "now" is the same jiffy, give or take one.
        let now = clock.now();
        let second = newest(f, (1, 1));
        assert!(now.abs_diff(newest(f, (1, 2))) <= 1, "clock says jiffy {now}, the balancer stamped {}", newest(f, (1, 2)));
        // And the clock's HZ turns the kernel's stamps 1.5 s apart into 1.5 s.
        let apart = clock.jiffies_to_duration(second - first);
        assert!(apart.abs_diff(Duration::from_millis(1500)) < Duration::from_millis(100), "{apart:?} at HZ {}", clock.hz);
        // At least the 1.5 s slept, less the one jiffy the stamp may have been taken late in.
        let age = clock.age(first);
        assert!(age + clock.jiffies_to_duration(1) >= Duration::from_millis(1500), "{age:?} at HZ {}", clock.hz);
        // Flows seen in the last second: the quiet one is left out, its entry is not.
        let recent = f.dataplane.conn_tally(now - clock.duration_to_jiffies(Duration::from_secs(1))).unwrap();
        assert_eq!((recent[&(1, 1)].active, recent[&(1, 1)].entries), (1, 2));
        assert_eq!((recent[&(1, 2)].active, recent[&(1, 2)].entries), (1, 1));
        assert_eq!(f.dataplane.conns().unwrap().len(), 3);
    });
}

#[test]
fn a_syn_waits_in_its_cpus_syn_table_until_the_connections_next_packet() {
    in_lab("synwait", |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        let key = vip_key(80, Protocol::Tcp);
        let ring1 = f.ring_of(1);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring1);
        let before = f.dataplane.counters().unwrap();
        assert_eq!(send_frame(f, &syn_frame(f.lb_mac, client(4000), vip(80))), routed_backend(1));
        assert_eq!(f.dataplane.conn(&flow(4000)).unwrap(), None, "the SYN is not in the table");

        // The ring changes during the handshake: the ACK follows the SYN, and
        // its flow enters the table there.
        let ring2 = f.ring_of(2);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring2);
        assert_eq!(send(f, 4000), routed_backend(1), "the handshake's ACK");
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert_eq!((delta.get(Counter::LruMiss), delta.get(Counter::LruHit)), (1, 1));
        assert_eq!(f.dataplane.conn(&flow(4000)).unwrap().map(|c| c.backend), Some(1));
        assert_eq!(send(f, 4000), routed_backend(1));

        // A SYN forgotten (remove_conn) leaves its next packet to the ring.
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring1);
        assert_eq!(send_frame(f, &syn_frame(f.lb_mac, client(4001), vip(80))), routed_backend(1));
        f.dataplane.remove_conn(&flow(4001)).unwrap();
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring2);
        assert_eq!(send(f, 4001), routed_backend(2), "a forgotten SYN");
    });
}

#[test]
fn a_syn_flood_writes_nothing_into_the_connection_table() {
    in_lab("synflood", |f| {
        f.add_backend(1, routed_backend(1));
        let key = vip_key(80, Protocol::Tcp);
        let ring = f.ring_of(1);
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring);
        for port in 1000..1100 {
            send(f, port);
        }
        let held = f.dataplane.conns().unwrap();
        let flood = 4 * f.dataplane.conn_table_capacity() as usize;
        let before = f.dataplane.counters().unwrap();
        for i in 0..flood {
            let source = numbered_client(i);
            send_frame(f, &syn_frame(f.lb_mac, source, vip(80)));
        }
        let delta = f.dataplane.counters().unwrap().since(&before);
        assert_eq!(delta.get(Counter::LruMiss) as usize, flood, "every SYN placed by the ring");
        assert_eq!(f.dataplane.conns().unwrap(), held, "the table is as before the flood");
    });
}

#[test]
fn a_connections_next_packet_on_another_cpu_is_placed_by_the_ring() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("one CPU: nothing to test");
        return;
    }
    in_lab("syncpu", |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        let key = vip_key(80, Protocol::Tcp);
        let (ring1, ring2) = (f.ring_of(1), f.ring_of(2));
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring1);
        stay_on_cpu(0);
        assert_eq!(send_frame(f, &syn_frame(f.lb_mac, client(4100), vip(80))), routed_backend(1));
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring2);
        // As RSS keeps a flow on one CPU, the SYN table is per CPU: a CPU that
        // did not see the SYN places the next packet by the ring of now.
        stay_on_cpu(1);
        assert_eq!(send(f, 4100), routed_backend(2));
    });
}

#[test]
fn a_syn_older_than_its_life_is_forgotten() {
    in_lab("synlife", |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        let key = vip_key(80, Protocol::Tcp);
        let (ring1, ring2) = (f.ring_of(1), f.ring_of(2));
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring1);
        let clock = tula_dataplane::KernelClock::calibrate(std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(send_frame(f, &syn_frame(f.lb_mac, client(4200), vip(80))), routed_backend(1));
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ring2);
        // SYN_LIFE jiffies (4.1 s at HZ=250) and two more: the SYN is too old to follow.
        std::thread::sleep(clock.jiffies_to_duration(tula_dataplane::abi::SYN_LIFE + 2));
        assert_eq!(send(f, 4200), routed_backend(2), "the ACK of an expired SYN goes by the ring");
    });
}
