//! tula's benchmarks: how many packets per second the balancer delivers
//! compared with the machine's own limit measured in the same run, and how
//! the control plane copes with 1,000 VIPs of 100 backends each.
//! docs/BENCHMARKS.md has the figures and what limits each one;
//! `scripts/bench.sh` reproduces them.
//!
//! Every benchmark is a `[[bench]]` target (`benches/dataplane.rs`,
//! `benches/control.rs`) that prints figures and asserts only that each run
//! took the path it meant to measure, never a speed. Under `cargo test`, or
//! with `TULA_BENCH_QUICK=1`, each runs once at a tiny size so the harness
//! keeps working; CI does that. Everything runs in network namespaces made
//! for the run and removed afterwards, and is bounded in packets and requests.
//!
//! Modules:
//! - [`size`]: quick (CI) or full size, and how many rounds.
//! - [`samples`]: medians with min and max.
//! - [`machine`]: the CPU, cores, kernel and load a run saw.
//! - [`bench_net`]: the generator and balancer namespaces and the veth between them.
//! - [`traffic`]: the live-frames generator (`bpf/bench_gen.c`), the sink
//!   (`bpf/bench_sink.c`), the floor program and per-program run times.
//! - [`throughput`]: the data-plane scenarios against the floor.
//! - [`results`]: `target/bench/dataplane.json`, the machine-readable figures.
//! - [`syn_flood`]: whether established flows keep their backend under a SYN flood.
//! - [`control_plane`]: building and applying 1,000 VIPs x 100 backends.
//! - [`api_load`]: the daemon's memory and its API latency under 100 clients.

pub mod api_load;
pub mod bench_net;
pub mod control_plane;
pub mod machine;
pub mod results;
pub mod samples;
pub mod size;
pub mod syn_flood;
pub mod throughput;
pub mod traffic;
