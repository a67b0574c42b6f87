//! Does an established flow keep its backend while a SYN flood fills the
//! connection table?
//!
//! Established flows are opened first and their backends read from the
//! table. Then a flood of new sources, four times the table's size, runs
//! while the VIP's ring changes halfway (a backend is added, so a flow that
//! lost its table entry may be placed elsewhere by the new ring). Afterwards
//! each established flow sends one more packet. Reported: the share whose
//! table entry survived the flood, and the share that still reached its
//! first backend. Twice: with the established flows sending throughout the
//! flood (one packet in 16), and with them idle.

use std::net::Ipv4Addr;

use tula_dataplane::{Backend, Dsr, Scheduler, VipKey, VipSpec};

use crate::bench_net;
use crate::throughput::{l3_backends, l3_vip, ring_of, Bench};
use crate::traffic::TrafficSpec;

/// One phase's outcome.
#[derive(Debug, Clone)]
pub struct FloodResult {
    pub name: &'static str,
    pub established: u32,
    pub flood_packets: u64,
    pub flood_mpps: f64,
    /// Established flows whose table entry still named their first backend after the flood.
    pub kept_entry: u32,
    /// Established flows that reached their first backend with their next packet.
    pub kept_backend: u32,
}

impl FloodResult {
    pub fn kept_entry_share(&self) -> f64 {
        f64::from(self.kept_entry) / f64::from(self.established)
    }

    pub fn kept_backend_share(&self) -> f64 {
        f64::from(self.kept_backend) / f64::from(self.established)
    }
}

/// Backend id of the backend added mid-flood: the last one the plan leaves free.
pub fn added_backend_id(bench: &Bench<'_>) -> u32 {
    bench.plan.load.max_backends - 1
}

/// Runs both phases. Call from a thread in the gen namespace, with the balancer on lb0.
pub fn measure(bench: &mut Bench<'_>) -> Vec<FloodResult> {
    let flood = 4 * u64::from(bench.plan.load.conn_table_size);
    let established = bench.plan.flows;
    vec![
        phase(
            bench,
            "flows active during the flood (1 packet in 16)",
            1 << 24,
            established,
            15,
            flood,
        ),
        phase(
            bench,
            "flows idle during the flood",
            2 << 24,
            established,
            16,
            flood,
        ),
    ]
}

fn set_ring(bench: &mut Bench<'_>, backends: &[(u32, Ipv4Addr)]) {
    let spec = VipSpec {
        id: 0,
        dsr: Dsr::L3Ipip,
        scheduler: Scheduler::Maglev,
        icmp_echo: false,
    };
    let key = VipKey {
        addr: l3_vip().addr.into(),
        port: l3_vip().port,
        protocol: l3_vip().protocol,
    };
    let ring = ring_of(backends, bench.dp.ring_size());
    bench
        .dp
        .set_vip(&key, &spec, ring.slots())
        .expect("replacing the L3 VIP's ring");
}

fn phase(
    bench: &mut Bench<'_>,
    name: &'static str,
    est_base: u32,
    established: u32,
    new_per_16: u32,
    flood_packets: u64,
) -> FloodResult {
    let ifindex = bench.net.gen_link.index;
    set_ring(bench, &l3_backends());
    let opening = TrafficSpec::established(established, est_base, vec![l3_vip()]);
    bench.generator.configure(&opening);
    // Two packets each: the table keeps flows that sent more than one packet
    // over a flood of one-packet flows, and an established flow has.
    bench.generator.send(ifindex, 2 * established);
    let first: Vec<u32> = (est_base..est_base + established)
        .map(|f| {
            bench
                .dp
                .conn(&opening.flow(f))
                .expect("reading the connection table")
                .unwrap_or_else(|| {
                    panic!(
                        "{name}: flow {} was not in the table after its first two packets",
                        opening.flow(f)
                    )
                })
                .backend
        })
        .collect();

    // The flood, with a backend added to the ring halfway.
    let flood = TrafficSpec {
        new_per_16,
        ..opening.clone()
    };
    bench.generator.configure(&flood);
    let half = (flood_packets / 2) as u32;
    let first_half = bench.generator.send(ifindex, half);
    let added = added_backend_id(bench);
    let added_addr = bench_net::l3_backend(SPARE_ADDR_INDEX);
    bench
        .dp
        .set_backend(
            added,
            &Backend {
                addr: added_addr.into(),
                alive: true,
            },
        )
        .expect("setting the added backend");
    let mut grown = l3_backends();
    grown.push((added, added_addr));
    set_ring(bench, &grown);
    let second_half = bench.generator.send(ifindex, half);

    let kept_entry = (est_base..est_base + established)
        .zip(&first)
        .filter(|&(f, &backend)| {
            bench
                .dp
                .conn(&opening.flow(f))
                .expect("reading the connection table")
                .is_some_and(|c| c.backend == backend)
        })
        .count() as u32;
    bench.generator.configure(&opening);
    bench.generator.send(ifindex, established);
    let kept_backend = (est_base..est_base + established)
        .zip(&first)
        .filter(|&(f, &backend)| {
            bench
                .dp
                .conn(&opening.flow(f))
                .expect("reading the connection table")
                .is_some_and(|c| c.backend == backend)
        })
        .count() as u32;
    set_ring(bench, &l3_backends());
    bench
        .dp
        .remove_backend(added)
        .expect("removing the added backend");
    let wall = first_half.wall + second_half.wall;
    FloodResult {
        name,
        established,
        flood_packets: first_half.packets + second_half.packets,
        flood_mpps: (first_half.packets + second_half.packets) as f64 / wall.as_secs_f64() / 1e6,
        kept_entry,
        kept_backend,
    }
}

/// The added backend's address: L3 backend number 1000 (198.18.67.233), used by no VIP.
const SPARE_ADDR_INDEX: u32 = 1000;

/// Prints the results as a table.
pub fn print(results: &[FloodResult], table_size: u32) {
    println!(
        "\nSYN flood: established flows under a flood of new sources ({} packets, 4x the {}-entry connection table), a backend added halfway",
        results.first().map_or(0, |r| r.flood_packets),
        table_size
    );
    println!(
        "  {:<48} {:>12} {:>16} {:>18} {:>12}",
        "established flows", "flows", "entry survived", "kept its backend", "flood Mpps"
    );
    for r in results {
        println!(
            "  {:<48} {:>12} {:>15.1}% {:>17.1}% {:>12.2}",
            r.name,
            r.established,
            100.0 * r.kept_entry_share(),
            100.0 * r.kept_backend_share(),
            r.flood_mpps
        );
    }
}
