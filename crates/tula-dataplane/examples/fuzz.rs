//! The differential fuzzer's long run: seeded random and mutated frames
//! through the balancer (BPF_PROG_TEST_RUN, in a namespace of its own) and
//! through the reference model (`tula_dataplane::model`), printing frames/s
//! and every mismatch with its frame in hex. Root needed.
//!
//!   cargo run --release -p tula-dataplane --example fuzz -- --frames 1000000 --seed 1
//!   cargo run --release -p tula-dataplane --example fuzz -- --replay <hex frame>
//!
//! A mismatch depends on the state earlier frames left (connection and
//! fragment tables, round-robin cursors): `--seed` and `--frames` replay the
//! whole run; `--replay` runs one frame on a fresh balancer.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;

use support::fuzz;
use support::*;

fn main() -> ExitCode {
    let mut frames = 1_000_000u64;
    let mut seed = 1u64;
    let mut replay = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--frames" => {
                frames = value()
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--frames: {e}")))
            }
            "--seed" => {
                seed = value()
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--seed: {e}")))
            }
            "--replay" => {
                let text = value();
                replay = Some(
                    fuzz::unhex(&text)
                        .unwrap_or_else(|| usage(&format!("--replay: not hex: {text}"))),
                );
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    in_lab_with("fuzz", &fuzz::fuzz_options(), |f| {
        stay_on_cpu0();
        let mut model = fuzz::set_up(f);
        if let Some(frame) = replay {
            return match fuzz::replay(f, &mut model, &frame) {
                Some(mismatch) => {
                    println!("{mismatch}");
                    ExitCode::FAILURE
                }
                None => {
                    println!("agree");
                    ExitCode::SUCCESS
                }
            };
        }
        let report = fuzz::run(f, &mut model, frames, seed, |mismatch| {
            println!("{mismatch}")
        });
        println!(
            "{} frames (seed {seed}) in {:.1} s: {:.0} frames/s; {} mismatches, {} XDP_ABORTED, {} test-run errors",
            report.frames,
            report.elapsed.as_secs_f64(),
            report.frames_per_second(),
            report.mismatches,
            report.aborted,
            report.errors
        );
        println!("verdicts: {:?}", report.verdicts);
        if report.mismatches + report.aborted + report.errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

fn usage(problem: &str) -> ! {
    eprintln!("fuzz: {problem}\nusage: fuzz [--frames N] [--seed N] [--replay HEX]");
    std::process::exit(2)
}
