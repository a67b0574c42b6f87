//! XDP programs of objects other than the balancer (the benches' floor and
//! memory probes), run and timed by BPF_PROG_TEST_RUN the way
//! `Dataplane::time_run` runs the balancer.

use std::time::Duration;

use aya::programs::Xdp;
use aya::{Ebpf, TestRun, TestRunOptions};
use tula_dataplane::xdp_md;

/// The floor for every packet-cost figure: swaps the MACs, returns XDP_TX (bpf/bench_floor.c).
pub static FLOOR_OBJECT: &[u8] = include_bytes!("../../../../bpf/obj/bench_floor.o");

/// A loaded object whose programs the caller verifies by name (after filling its maps, if it likes).
pub struct TimedObject {
    ebpf: Ebpf,
}

impl TimedObject {
    pub fn load(object: &[u8], what: &str) -> TimedObject {
        let ebpf = Ebpf::load(object).unwrap_or_else(|e| panic!("loading {what}: {e:?}"));
        TimedObject { ebpf }
    }

    /// The floor object, its program verified.
    pub fn floor() -> TimedObject {
        let mut floor = TimedObject::load(FLOOR_OBJECT, "bench_floor.o");
        floor.verify("bench_floor");
        floor
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn verify(&mut self, program: &str) {
        let xdp: &mut Xdp = self
            .ebpf
            .program_mut(program)
            .unwrap_or_else(|| panic!("no program {program}"))
            .try_into()
            .unwrap();
        xdp.load()
            .unwrap_or_else(|e| panic!("verifying {program}: {e}"));
    }

    /// One test run of `program` with the context the balancer gets; (verdict code, kernel time).
    pub fn run(&self, program: &str, frame: &[u8], ingress: u32, repeat: u32) -> (u32, Duration) {
        let xdp: &Xdp = self.ebpf.program(program).unwrap().try_into().unwrap();
        let ctx = xdp_md(frame.len(), ingress);
        let result = xdp
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat,
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("test run of {program}: {e}"));
        (result.return_value, result.duration)
    }

    /// Mean kernel ns per run of `program` over `frames` (one run each,
    /// repeat = 1), each of which must come back XDP_TX.
    pub fn mean_ns(&self, program: &str, frames: &[Vec<u8>], ingress: u32) -> f64 {
        let mut total = Duration::ZERO;
        for frame in frames {
            let (code, time) = self.run(program, frame, ingress, 1);
            assert_eq!(code, 3, "{program}: XDP_TX expected");
            total += time;
        }
        total.as_nanos() as f64 / frames.len() as f64
    }
}
