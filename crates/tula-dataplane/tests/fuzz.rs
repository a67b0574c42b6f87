//! The differential fuzzer's sample for CI: 50,000 seeded random and mutated
//! frames through the balancer and the reference model (`support/fuzz.rs`);
//! every verdict, output byte and counter must agree. The long run is
//! `cargo run --release -p tula-dataplane --example fuzz -- --frames 1000000`.

mod support;

use support::fuzz;
use support::*;

#[test]
fn the_balancer_agrees_with_the_model_on_50000_random_frames() {
    in_lab_with("fuzz", &fuzz::fuzz_options(), |f| {
        stay_on_cpu0();
        let mut model = fuzz::set_up(f);
        let mut shown = 0;
        let report = fuzz::run(f, &mut model, 50_000, 17, |mismatch| {
            if shown < 10 {
                eprintln!("{mismatch}");
                shown += 1;
            }
        });
        eprintln!(
            "{} frames, {:.0} frames/s, verdicts {:?}",
            report.frames,
            report.frames_per_second(),
            report.verdicts
        );
        assert_eq!(
            (report.mismatches, report.aborted, report.errors),
            (0, 0, 0),
            "mismatches, XDP_ABORTED, test-run errors"
        );
    });
}
