//! Data-plane benchmark: Mpps offered and delivered through the real balancer
//! for five scenarios against the floor measured in the same run, where each
//! packet's time goes, and what a SYN flood does to established flows.
//! See crates/tula-bench/src/throughput.rs and syn_flood.rs for the method.
//!
//! `cargo bench -p tula-bench --bench dataplane` (root). Under `cargo test`
//! or with TULA_BENCH_QUICK=1 it runs once at a tiny size.

use tula_bench::bench_net::BenchNet;
use tula_bench::machine::Machine;
use tula_bench::size::Size;
use tula_bench::throughput::{Bench, OnLb, Plan};
use tula_bench::{results, syn_flood, throughput};

fn main() {
    let size = Size::from_env();
    let plan = Plan::new(size);
    println!("{}", Machine::read());
    println!("size: {size:?}");
    let net = BenchNet::create(
        &format!("tbd{}", std::process::id()),
        throughput::SMALL_VIP_BACKENDS,
    );
    let gen_ns = &net.gen;
    let (report, flood, scaling) = gen_ns
        .run(|| {
            tula_dataplane::stay_on_cpu(plan.cpu);
            let mut bench = Bench::new(&net, &plan);
            let report = throughput::measure(&mut bench);
            let ring_bytes = bench.dp.ring_bytes_per_slot().expect("reading map memory");
            println!(
                "ring memory: {ring_bytes:.3} bytes a slot ({} rings of {} slots)",
                bench.dp.max_vips() + tula_dataplane::abi::SPARE_RINGS,
                bench.dp.ring_size()
            );
            let scaling = throughput::measure_scaling(&mut bench);
            bench.put_on_lb(OnLb::Balancer);
            let flood = syn_flood::measure(&mut bench);
            (report, flood, scaling)
        })
        .expect("entering the generator namespace");
    report.print(&plan);
    throughput::print_scaling(&scaling);
    syn_flood::print(&flood, plan.load.conn_table_size);
    let mut paths = report.results();
    paths.extend(throughput::scaling_results(&scaling));
    let (written, doc) = results::write_dataplane(&Machine::read().to_string(), &paths)
        .expect("writing target/bench/dataplane.json");
    println!("\nwrote {}", written.display());
    results::print_targets(&results::judge_targets(&doc));
    println!("\n{}", Machine::read());
}
