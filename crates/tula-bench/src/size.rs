//! Quick or full size. Quick (`TULA_BENCH_QUICK=1`, or any run not started by
//! `cargo bench`, which passes `--bench`) runs every scenario once at a tiny
//! size: it proves the harness works, its figures mean nothing.

/// How big a benchmark run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Quick,
    Full,
}

impl Size {
    /// Quick under `cargo test` or with `TULA_BENCH_QUICK` set; full under `cargo bench`.
    pub fn from_env() -> Size {
        let quick = std::env::var_os("TULA_BENCH_QUICK").is_some_and(|v| v != "0")
            || !std::env::args().any(|a| a == "--bench");
        if quick {
            Size::Quick
        } else {
            Size::Full
        }
    }

    /// Rounds whose median is reported (`TULA_BENCH_ROUNDS` overrides the full size's 5).
    pub fn rounds(self) -> usize {
        match self {
            Size::Quick => 1,
            Size::Full => std::env::var("TULA_BENCH_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .unwrap_or(5),
        }
    }

    /// `quick` or `full`, whichever this size is.
    pub fn pick<T>(self, quick: T, full: T) -> T {
        match self {
            Size::Quick => quick,
            Size::Full => full,
        }
    }
}
