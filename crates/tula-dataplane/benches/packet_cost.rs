//! ns per packet through BPF_PROG_TEST_RUN for the balancer's paths -- new
//! flow (a SYN: hash, ring, this CPU's SYN table), established flow (table
//! hit), non-VIP packet; besides, a new flow of a round-robin VIP (its SYN
//! into the connection table) and a new connection's second packet (its SYN
//! moved from the SYN table into the connection table) -- and for a floor
//! program that only swaps MACs and returns XDP_TX (bpf/bench_floor.c), all
//! timed the same way in the same run. Prints figures and ratios to the
//! floor; asserts nothing about speed.
//!
//! Method: the kernel does not restore the frame between iterations of one
//! test run (LAB-NOTES), so every packet is its own test run with repeat = 1,
//! for every path including the floor; the figure is the kernel-measured time
//! per run, which includes a fixed per-run cost common to all of them.
//! Before and after each timed batch the balancer's own counters are read,
//! and the batch counts only if every run took the intended path.
//! A second table times paths whose output takes the same path again (the
//! floor, non-VIP, an L2 DSR established flow) with repeat = N inside the
//! kernel, which removes most of that fixed cost. A third gives the IPv6
//! paths (IP6IP6 new and established flows, non-VIP), against the same floor.
//!
//! `cargo bench -p tula-dataplane --bench packet_cost`; quick mode (tiny maps,
//! few packets, for CI) with TULA_BENCH_QUICK=1 or when run by `cargo test`.
//! Needs root (a network namespace for bpf_fib_lookup).

#[path = "../tests/support/mod.rs"]
mod support;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use support::timed::TimedObject;
use support::*;
use tula_dataplane::{
    Counter, Dataplane, Dsr, LoadOptions, Protocol, Scheduler, VipSpec, XdpAction,
};

struct Config {
    packets: usize,
    rounds: usize,
    options: LoadOptions,
}

fn config() -> Config {
    let quick =
        std::env::var_os("TULA_BENCH_QUICK").is_some() || !std::env::args().any(|a| a == "--bench");
    if quick {
        Config {
            packets: 200,
            rounds: 1,
            options: small_options(),
        }
    } else {
        Config {
            packets: 20_000,
            rounds: 7,
            options: LoadOptions {
                // Production map sizes, except fewer VIPs to keep the ring map small.
                max_vips: 16,
                ..LoadOptions::default()
            },
        }
    }
}

/// A path to time: its frames (one per run, cycled) and what the counters must show.
struct Case {
    name: &'static str,
    frames: Vec<Vec<u8>>,
    verdict: XdpAction,
    /// The counter that must grow by exactly one per run.
    counter: Option<Counter>,
}

fn time_balancer(dp: &Dataplane, case: &Case, ingress: u32, packets: usize, repeat: u32) -> f64 {
    let before = dp.counters().unwrap();
    let mut total = Duration::ZERO;
    for i in 0..packets {
        let frame = &case.frames[i % case.frames.len()];
        let (action, time) = dp.time_run(frame, Some(ingress), repeat).unwrap();
        assert_eq!(
            action, case.verdict,
            "{}: run {i} took another path",
            case.name
        );
        total += time;
    }
    let delta = dp.counters().unwrap().since(&before);
    let runs = (packets as u64) * u64::from(repeat);
    if let Some(counter) = case.counter {
        assert_eq!(
            delta.get(counter),
            runs,
            "{}: counter {counter} moved by {} for {runs} runs",
            case.name,
            delta.get(counter)
        );
    }
    let verdict_counter = match case.verdict {
        XdpAction::Tx => Counter::Tx,
        XdpAction::Pass => Counter::Pass,
        _ => unreachable!(),
    };
    assert_eq!(
        delta.get(verdict_counter),
        runs,
        "{}: verdict counter",
        case.name
    );
    total.as_nanos() as f64 / packets as f64
}

fn time_floor(floor: &TimedObject, frame: &[u8], ingress: u32, packets: usize, repeat: u32) -> f64 {
    let mut total = Duration::ZERO;
    for _ in 0..packets {
        let (code, time) = floor.run("bench_floor", frame, ingress, repeat);
        assert_eq!(code, 3, "floor: XDP_TX expected");
        total += time;
    }
    total.as_nanos() as f64 / packets as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// SYNs to `vip_port` from `count` distinct clients, numbered from `first`.
fn new_flow_frames(lb_mac: [u8; 6], first: usize, count: usize, vip_port: u16) -> Vec<Vec<u8>> {
    (first..first + count)
        .map(|i| syn_frame(lb_mac, numbered_client(i), vip(vip_port)))
        .collect()
}

/// Data segments (no SYN) to `vip_port` from the same clients: each a flow's
/// first packet when no SYN came before it, else its connection's second.
fn segment_frames(lb_mac: [u8; 6], first: usize, count: usize, vip_port: u16) -> Vec<Vec<u8>> {
    (first..first + count)
        .map(|i| tcp_frame(lb_mac, numbered_client(i), vip(vip_port)))
        .collect()
}

/// The second packet of `count` new connections (clients from `first`), each
/// run right after its SYN (untimed): it finds the SYN in this CPU's SYN
/// table and moves it into the connection table, a random bucket of it.
fn time_second_packets(dp: &Dataplane, lb_mac: [u8; 6], ingress: u32, first: usize, count: usize) -> f64 {
    let before = dp.counters().unwrap();
    let mut total = Duration::ZERO;
    let syns = new_flow_frames(lb_mac, first, count, 80);
    for (syn, segment) in syns.iter().zip(segment_frames(lb_mac, first, count, 80)) {
        assert_eq!(dp.test_run(syn, Some(ingress)).unwrap().0, XdpAction::Tx, "a SYN");
        let (action, time) = dp.time_run(&segment, Some(ingress), 1).unwrap();
        assert_eq!(action, XdpAction::Tx, "a connection's second packet");
        total += time;
    }
    let delta = dp.counters().unwrap().since(&before);
    let count = count as u64;
    assert_eq!(delta.get(Counter::LruMiss), count, "second packets: the SYNs placed");
    assert_eq!(delta.get(Counter::LruHit), count, "second packets: each found its SYN");
    total.as_nanos() as f64 / count as f64
}

/// New IPv6 flows, one SYN each, from 2001:db8:19::/64.
fn new_flow6_frames(lb_mac: [u8; 6], first: usize, count: usize) -> Vec<Vec<u8>> {
    (first..first + count)
        .map(|i| {
            let client = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x19, 0, 0, 0, (i >> 16) as u16, i as u16);
            syn6_frame(lb_mac, SocketAddrV6::new(client, 1024, 0, 0), vip6(80))
        })
        .collect()
}

fn main() {
    let config = config();
    let ns = tula_net::Netns::create(&format!("tdp-bench-{}", std::process::id()))
        .expect("creating the bench namespace (root needed)");
    ns.run(|| bench(&config))
        .expect("entering the bench namespace");
}

fn bench(config: &Config) {
    // A SYN waits in the SYN table of the CPU that ran it: as RSS does, keep every flow on one CPU.
    tula_dataplane::stay_on_this_cpu();
    build_topology();
    let lb0 = tula_net::link("lb0").unwrap();
    let (ingress, lb_mac) = (lb0.index, lb0.mac);
    let mut dp = Dataplane::load(&config.options).expect("loading the balancer");
    dp.set_interface("lb0", &Default::default()).unwrap();
    for id in 0..16 {
        dp.set_backend(
            id,
            &tula_dataplane::Backend {
                addr: routed_backend(1 + id as u8).into(),
                alive: true,
            },
        )
        .unwrap();
    }
    dp.set_backend(
        16,
        &tula_dataplane::Backend {
            addr: L2_BACKEND.into(),
            alive: true,
        },
    )
    .unwrap();
    let ring: Vec<u32> = (0..dp.ring_size()).map(|slot| slot % 16).collect();
    let spec = |id, dsr| VipSpec {
        id,
        dsr,
        scheduler: Scheduler::Maglev,
        icmp_echo: true,
    };
    let l3_vip = vip_key(80, Protocol::Tcp);
    dp.set_vip(&l3_vip, &spec(1, Dsr::L3Ipip), &ring).unwrap();
    let rr_vip = vip_key(81, Protocol::Tcp);
    let rr_spec = VipSpec {
        scheduler: Scheduler::RoundRobin,
        ..spec(3, Dsr::L3Ipip)
    };
    dp.set_vip(&rr_vip, &rr_spec, &ring).unwrap();
    let l2_vip = vip_key(8080, Protocol::Tcp);
    dp.set_vip(
        &l2_vip,
        &spec(2, Dsr::L2),
        &vec![16; dp.ring_size() as usize],
    )
    .unwrap();
    // IPv6: backends 20..36 (routed, IP6IP6) behind an IPv6 VIP.
    for id in 0..16u32 {
        dp.set_backend(
            20 + id,
            &tula_dataplane::Backend {
                addr: routed_backend6(1 + id as u16).into(),
                alive: true,
            },
        )
        .unwrap();
    }
    let ring6: Vec<u32> = (0..dp.ring_size()).map(|slot| 20 + slot % 16).collect();
    dp.set_vip(&vip6_key(80, Protocol::Tcp), &spec(4, Dsr::L3Ipip), &ring6)
        .unwrap();
    let floor = TimedObject::floor();

    let established = tcp_frame(lb_mac, client(5555), vip(80));
    let l2_established = tcp_frame(lb_mac, client(5556), vip(8080));
    let not_vip = tcp_frame(lb_mac, client(5557), SocketAddrV4::new(LB_ADDR, 22));
    let established6 = tcp6_frame(lb_mac, client6(5555), vip6(80));
    let not_vip6 = tcp6_frame(lb_mac, client6(5557), SocketAddrV6::new(LB_ADDR6, 22, 0, 0));
    for frame in [&established, &l2_established, &established6] {
        assert_eq!(
            dp.test_run(frame, Some(ingress)).unwrap().0,
            XdpAction::Tx,
            "priming the flow"
        );
    }
    // Distinct flows (each opened by a SYN) for every new-flow run of every
    // round and the warm-up; the second packets take clients of their own.
    let batch = config.packets;
    let mut round = 0;
    let mut next_cases = || {
        round += 1;
        let first = round * batch;
        (
            Case {
                name: "new flow",
                frames: new_flow_frames(lb_mac, first, batch, 80),
                verdict: XdpAction::Tx,
                counter: Some(Counter::LruMiss),
            },
            Case {
                name: "new flow, round robin",
                frames: new_flow_frames(lb_mac, first, batch, 81),
                verdict: XdpAction::Tx,
                counter: Some(Counter::LruMiss),
            },
            first,
        )
    };
    let established_case = Case {
        name: "established",
        frames: vec![established],
        verdict: XdpAction::Tx,
        counter: Some(Counter::LruHit),
    };
    let not_vip_case = Case {
        name: "non-VIP",
        frames: vec![not_vip.clone()],
        verdict: XdpAction::Pass,
        counter: Some(Counter::NotVip),
    };
    let l2_case = Case {
        name: "L2 established",
        frames: vec![l2_established],
        verdict: XdpAction::Tx,
        counter: Some(Counter::LruHit),
    };

    let established6_case = Case {
        name: "IPv6 established",
        frames: vec![established6],
        verdict: XdpAction::Tx,
        counter: Some(Counter::LruHit),
    };
    let not_vip6_case = Case {
        name: "IPv6 non-VIP",
        frames: vec![not_vip6],
        verdict: XdpAction::Pass,
        counter: Some(Counter::NotVip),
    };
    let new6_case = |round: usize| Case {
        name: "IPv6 new flow",
        frames: new_flow6_frames(lb_mac, round * batch, batch),
        verdict: XdpAction::Tx,
        counter: Some(Counter::LruMiss),
    };

    // Warm-up: caches, branch predictors, the LRU's free lists.
    time_floor(&floor, &not_vip, ingress, config.packets, 1);
    let (new_case, rr_case, _) = next_cases();
    time_balancer(&dp, &new_case, ingress, config.packets, 1);
    time_balancer(&dp, &rr_case, ingress, config.packets, 1);
    time_balancer(&dp, &established_case, ingress, config.packets, 1);
    time_balancer(&dp, &not_vip_case, ingress, config.packets, 1);

    // Rounds interleave the cases so that noise from other work hits them alike.
    let (mut floor_ns, mut new_ns, mut est_ns, mut notvip_ns) = (vec![], vec![], vec![], vec![]);
    let (mut rr_ns, mut second_ns) = (vec![], vec![]);
    for _ in 0..config.rounds {
        let (new_case, rr_case, first) = next_cases();
        floor_ns.push(time_floor(&floor, &not_vip, ingress, config.packets, 1));
        new_ns.push(time_balancer(&dp, &new_case, ingress, config.packets, 1));
        rr_ns.push(time_balancer(&dp, &rr_case, ingress, config.packets, 1));
        second_ns.push(time_second_packets(&dp, lb_mac, ingress, (1 << 21) + first, config.packets));
        est_ns.push(time_balancer(
            &dp,
            &established_case,
            ingress,
            config.packets,
            1,
        ));
        notvip_ns.push(time_balancer(
            &dp,
            &not_vip_case,
            ingress,
            config.packets,
            1,
        ));
    }
    // IPv6 in rounds of their own, after the IPv4 ones: its new flows fill
    // another table, which must not cool the caches of the IPv4 rounds.
    let (mut new6_ns, mut est6_ns, mut notvip6_ns) = (vec![], vec![], vec![]);
    for round in 0..config.rounds {
        new6_ns.push(time_balancer(&dp, &new6_case(round), ingress, config.packets, 1));
        est6_ns.push(time_balancer(&dp, &established6_case, ingress, config.packets, 1));
        notvip6_ns.push(time_balancer(&dp, &not_vip6_case, ingress, config.packets, 1));
    }
    let full = full_table_established(&dp, &floor, config, lb_mac, ingress, &not_vip);
    // The fill evicted the idle L2 flow that the in-kernel repeat times: open it again.
    assert_eq!(dp.test_run(&l2_case.frames[0], Some(ingress)).unwrap().0, XdpAction::Tx);
    let floor_med = median(floor_ns);
    println!(
        "packet cost, BPF_PROG_TEST_RUN, repeat = 1 per packet, {} packets x {} rounds (median of round means; ring {} slots, conn table {})",
        config.packets, config.rounds, dp.ring_size(), config.options.conn_table_size
    );
    println!(
        "  {:<34} {:>8.1} ns   1.00x",
        "floor (MAC swap, XDP_TX)", floor_med
    );
    let mut json_paths = Vec::new();
    for (name, values, target, json_name) in [
        ("new flow (SYN: ring, SYN table)", new_ns, 4.0, "new flow"),
        ("established flow (table hit)", est_ns, 2.6, "established flow"),
        ("non-VIP packet (XDP_PASS)", notvip_ns, 1.4, "non-vip packet"),
    ] {
        let ns = median(values);
        json_paths.push(format!(
            "{{\"name\": \"{json_name}\", \"method\": \"packet_cost\", \"ns_per_packet\": {ns:.3}, \"floor_ns_per_packet\": {floor_med:.3}, \"mpps\": {:.3}}}",
            1e3 / ns
        ));
        println!(
            "  {:<34} {:>8.1} ns   {:.2}x  (target <= {:.1}x)",
            name,
            ns,
            ns / floor_med,
            target
        );
    }
    println!(
        "  {:<34} {:>8.1} ns   {:.2}x  (against its rounds' floor, {:.1} ns; the table {:.0}% full)",
        "established flow, full table",
        full.ns,
        full.ns / full.floor_ns,
        full.floor_ns,
        full.fill * 100.0
    );
    json_paths.push(format!(
        "{{\"name\": \"established flow, full table\", \"method\": \"packet_cost\", \"ns_per_packet\": {:.3}, \"floor_ns_per_packet\": {:.3}, \"mpps\": {:.3}}}",
        full.ns,
        full.floor_ns,
        1e3 / full.ns
    ));
    for (name, values, json_name) in [
        ("new flow, round robin", rr_ns, "new flow, round robin"),
        ("new connection's second packet", second_ns, "new connection, second packet"),
    ] {
        let ns = median(values);
        json_paths.push(format!(
            "{{\"name\": \"{json_name}\", \"method\": \"packet_cost\", \"ns_per_packet\": {ns:.3}, \"floor_ns_per_packet\": {floor_med:.3}, \"mpps\": {:.3}}}",
            1e3 / ns
        ));
        println!("  {:<34} {:>8.1} ns   {:.2}x", name, ns, ns / floor_med);
    }

    println!("  IPv6 (the same floor):");
    for (name, values) in [
        ("new flow (IP6IP6)", new6_ns),
        ("established flow (IP6IP6)", est6_ns),
        ("non-VIP packet (XDP_PASS)", notvip6_ns),
    ] {
        let ns = median(values);
        println!("  {:<34} {:>8.1} ns   {:.2}x", name, ns, ns / floor_med);
    }


    // In-kernel repeat: no per-run syscall cost; only for paths that repeat themselves.
    let repeat = if config.rounds > 1 { 1000 } else { 10 };
    let calls = (config.packets / 100).max(2);
    let floor_rep = time_floor(&floor, &not_vip, ingress, calls, repeat);
    let l2_rep = time_balancer(&dp, &l2_case, ingress, calls, repeat);
    let notvip_rep = time_balancer(&dp, &not_vip_case, ingress, calls, repeat);
    println!(
        "same, repeat = {repeat} inside the kernel (paths whose output takes the same path again)"
    );
    println!(
        "  {:<34} {:>8.1} ns   1.00x",
        "floor (MAC swap, XDP_TX)", floor_rep
    );
    println!(
        "  {:<34} {:>8.1} ns   {:.2}x",
        "established flow, L2 DSR",
        l2_rep,
        l2_rep / floor_rep
    );
    println!(
        "  {:<34} {:>8.1} ns   {:.2}x  ({:+.1} ns over the floor; target <= 10 ns)",
        "non-VIP packet (XDP_PASS)",
        notvip_rep,
        notvip_rep / floor_rep,
        notvip_rep - floor_rep
    );
    json_paths.push(format!(
        "{{\"name\": \"non-vip packet, in-kernel repeat\", \"method\": \"packet_cost\", \"ns_per_packet\": {notvip_rep:.3}, \"floor_ns_per_packet\": {floor_rep:.3}, \"mpps\": {:.3}}}",
        1e3 / notvip_rep
    ));
    write_paths(&json_paths);
}

/// An established flow's cost once the connection table is full, with the
/// floor timed in the same rounds.
struct FullTable {
    ns: f64,
    floor_ns: f64,
    /// The share of the table's ways holding a flow.
    fill: f64,
}

/// Fills the IPv4 connection table with twice its size in new flows
/// (untimed), opens one more flow, and times that flow as the established
/// case is timed: the path a busy balancer's established packets take.
fn full_table_established(
    dp: &Dataplane,
    floor: &TimedObject,
    config: &Config,
    lb_mac: [u8; 6],
    ingress: u32,
    floor_frame: &[u8],
) -> FullTable {
    // Clients numbered far above the rounds' (new_flow_frames), so every one
    // is new; first segments, not SYNs, which the SYN table would hold.
    let first = 1 << 22;
    let count = 2 * config.options.conn_table_size as usize;
    for start in (first..first + count).step_by(config.packets) {
        let chunk = config.packets.min(first + count - start);
        for frame in segment_frames(lb_mac, start, chunk, 80) {
            let (action, _) = dp
                .test_run(&frame, Some(ingress))
                .expect("filling the connection table");
            assert_eq!(action, XdpAction::Tx, "filling the connection table");
        }
    }
    let held = dp.conns().expect("reading the connection table").len();
    let fill = held as f64 / f64::from(dp.conn_table_capacity());
    assert!(fill >= 0.95, "the connection table is only {:.0}% full", fill * 100.0);
    let frame = tcp_frame(lb_mac, client(5558), vip(80));
    let (action, _) = dp.test_run(&frame, Some(ingress)).unwrap();
    assert_eq!(action, XdpAction::Tx, "opening the flow");
    let case = Case {
        name: "established, full table",
        frames: vec![frame],
        verdict: XdpAction::Tx,
        counter: Some(Counter::LruHit),
    };
    let (mut floor_ns, mut ns) = (vec![], vec![]);
    for _ in 0..config.rounds {
        floor_ns.push(time_floor(floor, floor_frame, ingress, config.packets, 1));
        ns.push(time_balancer(dp, &case, ingress, config.packets, 1));
    }
    FullTable {
        ns: median(ns),
        floor_ns: median(floor_ns),
        fill,
    }
}

/// Leaves the paths for the data-plane bench, which writes them into
/// target/bench/dataplane.json with its own (crates/tula-bench/src/results.rs).
fn write_paths(paths: &[String]) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").into())
        .join("bench");
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            dir.join("packet_cost.json"),
            format!("{{\"paths\": [\n  {}\n]}}\n", paths.join(",\n  ")),
        )
    });
    match written {
        Ok(()) => println!("wrote {}", dir.join("packet_cost.json").display()),
        Err(e) => println!("could not write {}: {e}", dir.display()),
    }
}
