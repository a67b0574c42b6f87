//! The machine a run measured: CPU model, cores, kernel, memory and load.
//! Printed at the top of every benchmark, because every figure is relative
//! to it (and the load says whether others were using it meanwhile).

use std::fmt;

/// What `/proc` says about this machine now.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_gib: f64,
    /// 1-, 5- and 15-minute load averages.
    pub load: [f64; 3],
}

/// CPUs online on the machine. Not `available_parallelism`, which counts only
/// the CPUs the calling thread may run on: 1 in a thread pinned for a run.
pub fn online_cores() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = online_cores();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        Machine {
            cpu_model,
            cores,
            kernel,
            memory_gib,
            load: load_average(),
        }
    }
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(f64::NAN));
    [(); 3].map(|_| fields.next().unwrap_or(f64::NAN))
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "machine: {}, {} cores, {:.1} GiB, Linux {}, load average {:.2} {:.2} {:.2}",
            self.cpu_model,
            self.cores,
            self.memory_gib,
            self.kernel,
            self.load[0],
            self.load[1],
            self.load[2]
        )
    }
}

#[cfg(test)]
mod tests {
    /// The generator's thread is pinned to one CPU; the multi-CPU runs it starts
    /// must still use two (they ran on one alone when this counted the thread's CPUs).
    #[test]
    fn a_pinned_thread_still_finds_every_cpu_for_the_scaling_runs() {
        let online = super::online_cores();
        let from_pinned = std::thread::spawn(|| {
            tula_dataplane::stay_on_cpu(0);
            crate::throughput::scaling_cpus()
        })
        .join()
        .expect("the pinned thread");
        assert_eq!(from_pinned, (0..online.min(2)).collect::<Vec<_>>());
        assert!(online >= 1);
    }
}
