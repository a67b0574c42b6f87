//! Ring build time for 65537 slots with 100 and 1000 backends (equal and mixed weights),
//! next to a baseline measured in the same run: the paper's unweighted pseudo-code,
//! written plainly. Also prints the disruption of removing one backend.
//!
//! `cargo bench -p tula-maglev`; `TULA_BENCH_QUICK=1` runs a few iterations only (for CI).

use std::time::{Duration, Instant};

use tula_maglev::{permutation, Permutation, Ring, RingBackend, DEFAULT_RING_SIZE, EMPTY_SLOT};

fn backends(n: u32, weight: impl Fn(u32) -> u32) -> Vec<RingBackend> {
    (0..n)
        .map(|i| RingBackend {
            id: i,
            key: format!("198.18.{}.{}", i / 250, i % 250 + 2),
            weight: weight(i),
        })
        .collect()
}

/// Baseline: the paper's population loop, unweighted, recomputing each preference with a modulo.
fn textbook(backends: &[RingBackend], size: u32) -> Vec<u32> {
    let mut sorted: Vec<&RingBackend> = backends.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let perms: Vec<Permutation> = sorted.iter().map(|b| permutation(&b.key, size)).collect();
    let mut next = vec![0u32; sorted.len()];
    let mut entry = vec![EMPTY_SLOT; size as usize];
    let mut n = 0;
    loop {
        for i in 0..sorted.len() {
            let mut c = perms[i].nth(next[i], size);
            while entry[c as usize] != EMPTY_SLOT {
                next[i] += 1;
                c = perms[i].nth(next[i], size);
            }
            entry[c as usize] = sorted[i].id;
            next[i] += 1;
            n += 1;
            if n == size {
                return entry;
            }
        }
    }
}

struct Timing {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn time(runs: usize, mut f: impl FnMut()) -> Timing {
    f(); // warm-up
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    Timing {
        median: samples[runs / 2],
        min: samples[0],
        max: samples[runs - 1],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let quick = std::env::var("TULA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runs = if quick { 3 } else { 31 };
    let size = DEFAULT_RING_SIZE;
    println!(
        "ring build, {size} slots, {runs} runs each{}",
        if quick { " (quick)" } else { "" }
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>14}",
        "case", "median ms", "min ms", "max ms", "vs textbook"
    );
    for n in [100u32, 1000] {
        let equal = backends(n, |_| 1);
        let base = time(runs, || {
            std::hint::black_box(textbook(&equal, size));
        });
        let cases = [
            ("equal weights", equal.clone()),
            ("weights 1..5", backends(n, |i| 1 + i % 5)),
            // Few heavy backends: the turn order comes from a heap rather than a scan of every round.
            (
                "1 in 50 weighs 1000",
                backends(n, |i| if i % 50 == 0 { 1000 } else { 1 }),
            ),
        ];
        for (label, set) in cases {
            let t = time(runs, || {
                std::hint::black_box(Ring::build(&set, size).unwrap());
            });
            println!(
                "{:<34} {:>10.3} {:>10.3} {:>10.3} {:>13.2}x",
                format!("{n} backends, {label}"),
                ms(t.median),
                ms(t.min),
                ms(t.max),
                t.median.as_secs_f64() / base.median.as_secs_f64()
            );
        }
        println!(
            "{:<34} {:>10.3} {:>10.3} {:>10.3} {:>14}",
            format!("{n} backends, textbook"),
            ms(base.median),
            ms(base.min),
            ms(base.max),
            "1.00x"
        );
    }

    println!("\ndisruption: slots changed / removed backend's slots, removing one backend");
    for n in [10u32, 100, 1000] {
        let set = backends(n, |_| 1);
        let before = Ring::build(&set, size).unwrap();
        let samples = if quick { 1 } else { 5 };
        let figures: Vec<f64> = (0..samples)
            .map(|k| {
                let removed = (k * n as usize) / samples;
                let mut rest = set.clone();
                let gone = rest.remove(removed);
                let after = Ring::build(&rest, size).unwrap();
                before.slots_changed(&after).unwrap() as f64 / before.shares()[&gone.id] as f64
            })
            .collect();
        let mean = figures.iter().sum::<f64>() / figures.len() as f64;
        println!("N = {n:<5} mean {mean:.3}x over {samples} removals");
    }
}
