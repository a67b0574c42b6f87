//! [`KernelClock`]: the kernel's jiffies as user space can know them, to read
//! the connection table's last-seen stamps (`bpf_jiffies64()` in
//! bpf/balancer.c) as ages. The kernel exports jiffies only in
//! /proc/timer_list (root), next to the CLOCK_MONOTONIC time it was printed
//! at; jiffies advance with CLOCK_MONOTONIC (the tick updates them from it),
//! so one reading fixes the offset and two readings a second apart give HZ.
//! After that, "now" in jiffies costs one `clock_gettime`.

use std::time::Duration;

use crate::abi;

/// Where the kernel prints jiffies and the monotonic time of the printout.
const TIMER_LIST: &str = "/proc/timer_list";

/// The HZ values Linux can be built with (CONFIG_HZ, all architectures).
const KNOWN_HZ: [u32; 9] = [24, 32, 48, 64, 100, 128, 250, 300, 1000];

/// How the kernel's jiffies relate to CLOCK_MONOTONIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelClock {
    /// Jiffies per second (the kernel's CONFIG_HZ).
    pub hz: u32,
    /// Jiffies at `at_ns`.
    jiffies: u64,
    /// CLOCK_MONOTONIC, in ns, when the kernel read `jiffies`.
    at_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("reading {TIMER_LIST} (needs root): {0}")]
    Read(#[from] std::io::Error),
    #[error("{TIMER_LIST} has no {0:?} line")]
    Missing(&'static str),
    #[error("jiffies advanced at {measured:.1} per second, which is no CONFIG_HZ Linux has")]
    UnknownHz { measured: f64 },
}

impl KernelClock {
    /// Reads /proc/timer_list twice, `gap` apart (a second gives HZ to
    /// within 1 per second: the two nearest HZ values, 250 and 300, are 50 apart).
    pub fn calibrate(gap: Duration) -> Result<KernelClock, ClockError> {
        let (j0, t0) = read_timer_list()?;
        std::thread::sleep(gap);
        let (j1, t1) = read_timer_list()?;
        let measured = (j1 - j0) as f64 / ((t1 - t0) as f64 / 1e9);
        let hz = nearest_hz(measured).ok_or(ClockError::UnknownHz { measured })?;
        Ok(KernelClock {
            hz,
            jiffies: j1,
            at_ns: t1,
        })
    }

    /// The kernel's jiffies now (what `bpf_jiffies64()` returns), to within one.
    pub fn now(&self) -> u64 {
        self.at(monotonic_ns())
    }

    /// Jiffies at CLOCK_MONOTONIC time `ns`.
    fn at(&self, ns: u64) -> u64 {
        let elapsed = ns.saturating_sub(self.at_ns) as u128;
        self.jiffies + (elapsed * u128::from(self.hz) / 1_000_000_000) as u64
    }

    /// How long ago jiffy `then` was (zero for one in the future).
    pub fn age(&self, then: u64) -> Duration {
        self.jiffies_to_duration(self.now().saturating_sub(then))
    }

    pub fn jiffies_to_duration(&self, jiffies: u64) -> Duration {
        Duration::from_nanos((u128::from(jiffies) * 1_000_000_000 / u128::from(self.hz)) as u64)
    }

    /// `duration` in jiffies, rounded up.
    pub fn duration_to_jiffies(&self, duration: Duration) -> u64 {
        (duration.as_nanos() * u128::from(self.hz)).div_ceil(1_000_000_000) as u64
    }
}

/// The jiffy a connection-table entry's `stamp` records (its flow's last packet).
pub fn stamp_jiffies(stamp: u64) -> u64 {
    (stamp & !abi::CONN_STAMP_HIT) >> abi::CONN_STAMP_SHIFT
}

/// (jiffies, CLOCK_MONOTONIC ns when the kernel printed them).
fn read_timer_list() -> Result<(u64, u64), ClockError> {
    parse_timer_list(&std::fs::read_to_string(TIMER_LIST)?)
}

fn parse_timer_list(text: &str) -> Result<(u64, u64), ClockError> {
    // "now at 10179250303819 nsecs", first; "jiffies: 4297437441" once per CPU.
    let now = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("now at ")?
                .strip_suffix(" nsecs")?
                .parse()
                .ok()
        })
        .ok_or(ClockError::Missing("now at"))?;
    let jiffies = text
        .lines()
        .find_map(|l| l.strip_prefix("jiffies: ")?.trim().parse().ok())
        .ok_or(ClockError::Missing("jiffies:"))?;
    Ok((jiffies, now))
}

/// The CONFIG_HZ within 3% of `measured`.
fn nearest_hz(measured: f64) -> Option<u32> {
    KNOWN_HZ
        .into_iter()
        .find(|&hz| (measured - f64::from(hz)).abs() <= f64::from(hz) * 0.03)
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_list_gives_jiffies_and_their_time() {
        let text = "Timer List Version: v0.10\nHRTIMER_MAX_CLOCK_BASES: 8\nnow at 10179250303819 nsecs\n\
                    cpu: 0\n  .idle_jiffies   : 4297435617\njiffies: 4297437441\ncpu: 1\njiffies: 4297437441\n";
        assert_eq!(
            parse_timer_list(text).unwrap(),
            (4_297_437_441, 10_179_250_303_819)
        );
        assert!(matches!(
            parse_timer_list("now at 5 nsecs\n"),
            Err(ClockError::Missing("jiffies:"))
        ));
    }

    #[test]
    fn measured_rates_round_to_the_kernel_hz() {
        assert_eq!(nearest_hz(249.2), Some(250));
        assert_eq!(nearest_hz(301.0), Some(300));
        assert_eq!(nearest_hz(998.0), Some(1000));
        assert_eq!(nearest_hz(99.5), Some(100));
        assert_eq!(nearest_hz(275.0), None);
    }

    #[test]
    fn jiffies_advance_at_hz_from_the_reading() {
        let clock = KernelClock {
            hz: 250,
            jiffies: 1_000,
            at_ns: 5_000_000_000,
        };
        assert_eq!(clock.at(5_000_000_000), 1_000);
        assert_eq!(clock.at(7_000_000_000), 1_500);
        assert_eq!(clock.at(4_000_000_000), 1_000, "never before the reading");
        assert_eq!(clock.duration_to_jiffies(Duration::from_secs(60)), 15_000);
        assert_eq!(clock.duration_to_jiffies(Duration::from_millis(1)), 1);
        assert_eq!(clock.jiffies_to_duration(125), Duration::from_millis(500));
        let stamp = 1_234u64 << abi::CONN_STAMP_SHIFT | 77 | abi::CONN_STAMP_HIT;
        assert_eq!(stamp_jiffies(stamp), 1_234);
    }
}
