//! Control-plane benchmark: building and applying 1,000 VIPs x 100 backends,
//! a one-backend change, the daemon's memory, and its API latency under 100
//! concurrent clients. See crates/tula-bench/src/control_plane.rs and
//! api_load.rs for the method.
//!
//! `cargo bench -p tula-bench --bench control` (root; needs the `tula`
//! executable, see `api_load::tula_bin`). Under `cargo test` or with
//! TULA_BENCH_QUICK=1 it runs once at a tiny size.

use tula_bench::api_load;
use tula_bench::control_plane::{self, CpNet, Scale};
use tula_bench::machine::Machine;
use tula_bench::size::Size;

fn main() {
    let size = Size::from_env();
    println!("{}", Machine::read());
    println!("size: {size:?}");
    let net = CpNet::create(&format!("tbc{}", std::process::id()));
    // Each round applies the whole config from scratch: at most 3.
    let rounds = size.rounds().min(3);
    let control = net
        .ns
        .run(|| control_plane::measure(size, rounds))
        .expect("entering the control-plane namespace");
    control.print();
    // The API at a small, everyday scale, and at the issue's. At scale every
    // drain is a ~2 s apply and 100 of them queue: one batch only.
    let small = Scale {
        vips: 10,
        backends: 10,
    };
    let big = Scale::for_size(size);
    let batches = size.rounds().min(3);
    let small_load = api_load::ApiLoad {
        get_batches: batches,
        gets_per_client: size.pick(2, 20),
        drain_batches: batches,
        alone: size.pick(2, 5),
    };
    let big_load = api_load::ApiLoad {
        get_batches: batches,
        gets_per_client: 2,
        drain_batches: 1,
        alone: 3,
    };
    let mut reports = vec![api_load::measure(&net.ns, size, small, small_load)];
    if big != small {
        reports.push(api_load::measure(&net.ns, size, big, big_load));
    }
    for report in &reports {
        report.print();
    }
    println!("\n{}", Machine::read());
}
