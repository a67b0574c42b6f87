//! What one random read-and-write of map memory costs an XDP program, by
//! where the memory lies: the same 64-byte line each time, lines within the
//! second-level cache and the TLB's reach, lines spread over more pages than
//! the TLB holds, and lines beyond the cache, all in one array map (4 KiB
//! pages, as the connection table); and the same lines in 1,024 arrays small
//! enough to be kmalloc'd, in the kernel's direct map (huge pages where the
//! kernel can), behind an array of maps. It explains the new-flow figure of
//! `packet_cost`: a new flow reads a random bucket of a 30.5 MiB table, 4
//! lines of 64 bytes, which the last cases time against 1 line.
//! Prints figures and ratios to the floor program measured in the same run
//! (bpf/bench_floor.c), timed the same way as `packet_cost` (one test run per
//! packet, repeat = 1); asserts nothing about speed.
//!
//! `cargo bench -p tula-dataplane --bench memory_cost`; quick mode (few
//! packets, for CI) with TULA_BENCH_QUICK=1 or when run by `cargo test`.
//! Needs root (BPF, and a network namespace of its own for the test runs).

#[path = "../tests/support/mod.rs"]
mod support;
use aya::maps::{Array, ArrayOfMaps, MapData};
use support::fuzz::Rng;
use support::timed::TimedObject;

static MEMORY_OBJECT: &[u8] = include_bytes!("../../../bpf/obj/bench_memory.o");

/// `lines` in bpf/bench_memory.c: 2^19 lines of 64 bytes, 32 MiB.
const LINES: u64 = 1 << 19;
const LINES_PER_PAGE: u64 = 4096 / 64;
/// `chunked_lines`: 1,024 arrays of 250 slots of 128 bytes (each kmalloc'd).
const CHUNKS: u32 = 1024;
const CHUNK_SLOTS: u32 = 250;
type ChunkSlot = [u64; 16];
/// Loopback: every namespace has it as ifindex 1.
const INGRESS: u32 = 1;

/// Where the lines a pattern reads lie.
#[derive(Clone, Copy)]
enum Lines {
    /// The first line, every time.
    Same,
    /// Any of the first `n` lines (n / 64 whole pages).
    AnyOf(u64),
    /// One line in each of the first `pages` pages, at an offset fixed per page.
    OnePerPage(u64),
    /// The first line of any of `n` 4-line buckets (256 bytes, as the connection table's).
    Bucket(u64),
}

impl Lines {
    fn index(self, rng: &mut Rng) -> u32 {
        match self {
            Lines::Same => 0,
            Lines::AnyOf(n) => (rng.next() % n) as u32,
            Lines::Bucket(n) => (rng.next() % n * 4) as u32,
            Lines::OnePerPage(pages) => {
                let page = rng.next() % pages;
                // A different line of each page: the lines spread over the cache's sets.
                (page * LINES_PER_PAGE + Rng::new(page).next() % LINES_PER_PAGE) as u32
            }
        }
    }
}

/// A frame carrying `index` right after its Ethernet header (bench_memory.c's frame_index).
fn frame(index: u32) -> Vec<u8> {
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    frame[14..18].copy_from_slice(&index.to_ne_bytes());
    frame
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick =
        std::env::var_os("TULA_BENCH_QUICK").is_some() || !std::env::args().any(|a| a == "--bench");
    let (packets, rounds) = if quick { (200, 1) } else { (20_000, 7) };
    let ns = tula_net::Netns::create(&format!("tdp-mem-{}", std::process::id()))
        .expect("creating the bench namespace (root needed)");
    ns.run(|| bench(packets, rounds))
        .expect("entering the bench namespace");
}

fn bench(packets: usize, rounds: usize) {
    let floor = TimedObject::floor();
    let mut memory = TimedObject::load(MEMORY_OBJECT, "bench_memory.o");
    let mut outer: ArrayOfMaps<&mut MapData, Array<MapData, ChunkSlot>> = ArrayOfMaps::try_from(
        memory
            .ebpf_mut()
            .map_mut("chunked_lines")
            .expect("chunked_lines"),
    )
    .unwrap();
    for index in 0..CHUNKS {
        // The outer map's reference keeps the chunk once its descriptor closes here.
        let chunk = Array::<MapData, ChunkSlot>::create(CHUNK_SLOTS, 0).expect("creating a chunk");
        outer.set(index, &chunk, 0).unwrap();
    }
    let programs = [
        "memory_lines",
        "memory_chunked_lines",
        "memory_bucket_line",
        "memory_bucket",
        "memory_bucket_touched",
    ];
    for program in programs {
        memory.verify(program);
    }

    let cases: [(&str, &str, Lines); 10] = [
        ("(a) the same line every time", "memory_lines", Lines::Same),
        (
            "(b) any of 8,192 lines in 128 pages (512 KiB)",
            "memory_lines",
            Lines::AnyOf(8192),
        ),
        (
            "(c) one line in each of 8,192 pages (32 MiB)",
            "memory_lines",
            Lines::OnePerPage(8192),
        ),
        (
            "(d) any line of 2 MiB (512 pages)",
            "memory_lines",
            Lines::AnyOf(32_768),
        ),
        (
            "(e) any line of 32 MiB (8,192 pages)",
            "memory_lines",
            Lines::AnyOf(LINES),
        ),
        (
            "(f) the same line every time",
            "memory_chunked_lines",
            Lines::Same,
        ),
        (
            "(g) any of 256,000 lines in 1,024 kmalloc'd arrays",
            "memory_chunked_lines",
            Lines::AnyOf(u64::from(CHUNKS * CHUNK_SLOTS)),
        ),
        (
            "(h) a bucket's first line, buckets of 32 MiB",
            "memory_bucket_line",
            Lines::Bucket(LINES / 4),
        ),
        (
            "(i) a bucket's 4 lines, checked way by way",
            "memory_bucket",
            Lines::Bucket(LINES / 4),
        ),
        (
            "(j) the same, each line read before any check",
            "memory_bucket_touched",
            Lines::Bucket(LINES / 4),
        ),
    ];
    let floor_frames = vec![frame(0); packets];
    let mut rng = Rng::new(1);
    let mut frames = |lines: Lines| -> Vec<Vec<u8>> {
        (0..packets).map(|_| frame(lines.index(&mut rng))).collect()
    };
    let mut floor_ns = Vec::new();
    let mut case_ns = vec![Vec::new(); cases.len()];
    // Rounds interleave the cases so that noise from other work hits them alike.
    for _ in 0..rounds {
        floor_ns.push(floor.mean_ns("bench_floor", &floor_frames, INGRESS));
        for ((_, program, lines), ns) in cases.iter().zip(&mut case_ns) {
            // A batch first, untimed, so that what the pattern can keep cached is cached.
            memory.mean_ns(program, &frames(*lines), INGRESS);
            ns.push(memory.mean_ns(program, &frames(*lines), INGRESS));
        }
    }
    let floor_med = median(floor_ns);
    let ns: Vec<f64> = case_ns.into_iter().map(median).collect();
    println!(
        "memory cost of one random read-and-write, BPF_PROG_TEST_RUN, repeat = 1 per packet, {packets} packets x {rounds} rounds (median of round means)"
    );
    let row = |name: &str, ns: f64| {
        println!("  {name:<52} {ns:>8.1} ns   {:.2}x", ns / floor_med);
    };
    row("floor (MAC swap, XDP_TX)", floor_med);
    println!("  64-byte lines of a 32 MiB array (4 KiB pages, as the connection table):");
    for ((name, _, _), ns) in cases[..5].iter().zip(&ns) {
        row(name, *ns);
    }
    println!("  the same 32 MiB as 1,024 arrays of 32 KiB, kmalloc'd (the direct map), in an array of maps:");
    for ((name, _, _), ns) in cases[5..7].iter().zip(&ns[5..7]) {
        row(name, *ns);
    }
    println!("  a connection-table miss in a full table (256-byte buckets of the 32 MiB array):");
    for ((name, _, _), ns) in cases[7..].iter().zip(&ns[7..]) {
        row(name, *ns);
    }
    println!("  what the differences isolate (on this machine's L2 and TLB sizes):");
    let diff = |name: &str, ns: f64| {
        println!("  {name:<52} {ns:>+8.1} ns   {:+.2}x", ns / floor_med);
    };
    diff("pages beyond the TLB's reach: (c) - (b)", ns[2] - ns[1]);
    diff("lines beyond L2: (d) - (b)", ns[3] - ns[1]);
    diff("a random line of 32 MiB: (e) - (a)", ns[4] - ns[0]);
    diff(
        "a random line of 32 MiB in chunks: (g) - (f)",
        ns[6] - ns[5],
    );
    diff(
        "4 KiB pages against the chunks, all told: (e) - (g)",
        ns[4] - ns[6],
    );
    diff("a bucket's other 3 lines: (i) - (h)", ns[8] - ns[7]);
    diff("reading them before the checks: (j) - (i)", ns[9] - ns[8]);
}
