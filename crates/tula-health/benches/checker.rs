//! CPU cost of health checking at scale: one checker (with tula-control and
//! its data plane, as `tula serve` runs them) checks 10,000 backends with TCP
//! checks at the default 2 s interval, against 10,000 real listeners, one per
//! backend address, served by a child process in the same network namespace.
//! Prints the checker process's CPU time per second of checking (getrusage),
//! the CPU per probe next to a baseline measured in the same run (the same
//! connects made one after another by a plain blocking loop), and how evenly
//! the probes are spread over the interval.
//!
//! `cargo bench -p tula-health`; `TULA_BENCH_QUICK=1` checks 1,000 backends
//! for 4 s (for CI). Needs root (namespaces, BPF).
//!
//! The loopback handshake's kernel work (the listener side included) runs in
//! the connecting process, so the figure is an upper bound of a real
//! deployment's, where the backend's side runs on other machines.

use std::io::Write;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tula_control::{Control, ControlOptions};
use tula_health::Checker;
use tula_net::Netns;

const PORT: u16 = 8080;
const BACKENDS_PER_VIP: usize = 100;
/// Set in the child that serves the listeners: how many.
const LISTENERS_ENV: &str = "TULA_BENCH_HEALTH_LISTENERS";

/// Backend address `i`: 198.18.128.0/17 upwards, skipping .0 and .255.
fn address(i: usize) -> Ipv4Addr {
    let base = u32::from(Ipv4Addr::new(198, 18, 128, 1));
    Ipv4Addr::from(base + (i / 254 * 256 + i % 254) as u32)
}

fn main() {
    if let Ok(count) = std::env::var(LISTENERS_ENV) {
        serve_listeners(count.parse().expect("listener count"));
        return;
    }
    let quick = std::env::var("TULA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (backends, measure) = if quick {
        (1_000, Duration::from_secs(4))
    } else {
        (10_000, Duration::from_secs(10))
    };
    let interval = Duration::from_secs(2);

    let pid = std::process::id();
    let ns = Netns::create(&format!("tula-hbench-{pid}")).expect("creating the bench namespace");
    let pin_dir = format!("/sys/fs/bpf/tula-hbench-{pid}");
    let state = std::env::temp_dir().join(format!("tula-hbench-{pid}"));
    let _cleanup = Cleanup {
        pin_dir: pin_dir.clone().into(),
        state: state.clone(),
    };

    let setup = Instant::now();
    ns.run(|| {
        tula_net::add_veth("lb0", "peer0", None).unwrap();
        tula_net::add_address("lb0", Ipv4Addr::new(198, 18, 0, 1).into(), 24).unwrap();
        tula_net::set_up("lb0").unwrap();
        tula_net::set_up("peer0").unwrap();
    })
    .unwrap();
    add_addresses(&ns, backends);
    let mut listeners = start_listeners(&ns, backends);

    let control = Arc::new(
        ns.run(|| {
            Control::start(ControlOptions {
                config_path: state.join("tula.toml"),
                state_dir: state.join("lib"),
            })
        })
        .unwrap()
        .expect("starting Control"),
    );
    let config = config(&pin_dir, backends);
    ns.run(|| control.apply(config, "bench"))
        .unwrap()
        .expect("applying the bench config");
    println!(
        "health checks: {backends} backends ({} VIPs x {BACKENDS_PER_VIP}), tcp checks every {interval:?}; setup {:.1?}",
        backends / BACKENDS_PER_VIP,
        setup.elapsed()
    );

    let runtime = ns
        .run(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        })
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let checker = Checker::spawn(control.clone(), runtime.handle());
    // Every backend probed once (one interval, plus reading the config and starting the tasks), then measure.
    let mut checked = 0;
    while started.elapsed() < interval * 3 {
        checked = checker
            .snapshot()
            .iter()
            .filter(|b| b.last_result.is_some())
            .count();
        if checked == backends {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let all_probed = started.elapsed();

    let probes = |c: &Checker| {
        let counts = c.counts();
        counts.passed + counts.failed + counts.errors
    };
    let (cpu_before, probes_before, start) = (process_cpu(), probes(&checker), Instant::now());
    let mut per_tick = Vec::new();
    let mut last = probes_before;
    while start.elapsed() < measure {
        std::thread::sleep(Duration::from_millis(100));
        let now = probes(&checker);
        per_tick.push(now - last);
        last = now;
    }
    let (wall, cpu, probed) = (
        start.elapsed(),
        process_cpu() - cpu_before,
        probes(&checker) - probes_before,
    );
    let counts = checker.counts();
    checker.stop();
    drop(runtime);

    // Baseline: the same connects (reset on close), made one after another by a blocking loop.
    let baseline_connects = (probed as usize).min(backends * 2);
    let (baseline_cpu, baseline_wall) = ns
        .run(|| {
            let (cpu0, start) = (thread_cpu(), Instant::now());
            for i in 0..baseline_connects {
                let stream = std::net::TcpStream::connect(SocketAddr::new(
                    address(i % backends).into(),
                    PORT,
                ))
                .unwrap();
                socket2::SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            (thread_cpu() - cpu0, start.elapsed())
        })
        .unwrap();
    let _ = listeners.kill();
    let _ = listeners.wait();

    let probes_per_s = probed as f64 / wall.as_secs_f64();
    let cores = cpu.as_secs_f64() / wall.as_secs_f64();
    let us_per_probe = cpu.as_secs_f64() * 1e6 / probed as f64;
    let baseline_us = baseline_cpu.as_secs_f64() * 1e6 / baseline_connects as f64;
    let mean = per_tick.iter().sum::<u64>() as f64 / per_tick.len() as f64;
    let peak = *per_tick.iter().max().unwrap_or(&0) as f64;
    println!(
        "  every backend probed once {all_probed:.1?} after the start ({checked} of {backends})"
    );
    println!(
        "  probes: {probed} in {wall:.1?} = {probes_per_s:.0}/s (expected {:.0}/s); passed {}, failed {}, errors {}",
        backends as f64 / interval.as_secs_f64(),
        counts.passed,
        counts.failed,
        counts.errors
    );
    println!(
        "  checker process CPU: {cpu:.2?} in {wall:.1?} = {:.1}% of one core",
        cores * 100.0
    );
    println!(
        "  CPU per probe: {us_per_probe:.1} us; baseline (blocking connect loop): {baseline_us:.1} us per connect \
         ({baseline_connects} in {baseline_wall:.1?}); ratio {:.2}",
        us_per_probe / baseline_us
    );
    println!(
        "  spread: probes per 100 ms: mean {mean:.0}, peak {peak:.0} (peak/mean {:.2})",
        peak / mean.max(1.0)
    );
    assert_eq!(
        checked, backends,
        "not every backend was probed within three intervals"
    );
    assert_eq!(
        counts.failed + counts.errors,
        0,
        "probes failed against live listeners"
    );
}

fn config(pin_dir: &str, backends: usize) -> tula_config::Config {
    let mut text = format!(
        "interfaces = [\"lb0\"]\npin_dir = \"{pin_dir}\"\nring_size = 1021\nconn_table_size = 4096\nmax_vips = 128\nmax_backends = {}\n",
        backends + 16
    );
    for v in 0..backends / BACKENDS_PER_VIP {
        text.push_str(&format!(
            "[[vip]]\nname = \"vip{v}\"\naddress = \"203.0.113.{}\"\nport = 80\nhealth_check = {{ type = \"tcp\", port = {PORT} }}\nbackends = [",
            v + 1
        ));
        for i in v * BACKENDS_PER_VIP..(v + 1) * BACKENDS_PER_VIP {
            text.push_str(&format!("{{ address = \"{}\" }},", address(i)));
        }
        text.push_str("]\n");
    }
    tula_config::Config::from_toml_str(&text).expect("bench config decodes")
}

/// Puts the backend addresses on `lo`, in one `ip -batch` (one netlink request each).
fn add_addresses(ns: &Netns, count: usize) {
    let mut ip = ns
        .command("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("running ip -batch");
    let mut script = String::new();
    for i in 0..count {
        script.push_str(&format!("address add {}/32 dev lo\n", address(i)));
    }
    ip.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(ip.wait().unwrap().success(), "ip -batch failed");
}

/// Starts this binary again in `ns` as the listener server; returns once it listens.
fn start_listeners(ns: &Netns, count: usize) -> Child {
    let mut child = ns
        .command(std::env::current_exe().unwrap())
        .env(LISTENERS_ENV, count.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the listener process");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening", "the listener process failed");
    child
}

/// The child: `count` listeners, each accepting and closing, until killed.
fn serve_listeners(count: usize) {
    let limit = libc::rlimit {
        rlim_cur: (count + 1024) as u64,
        rlim_max: (count + 1024) as u64,
    };
    // SAFETY: plain system call on a local struct.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for i in 0..count {
            let listener = tokio::net::TcpListener::bind(SocketAddr::new(address(i).into(), PORT))
                .await
                .unwrap_or_else(|e| panic!("binding {}:{PORT}: {e}", address(i)));
            tokio::spawn(async move {
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        drop(stream);
                    }
                }
            });
        }
        println!("listening");
        std::future::pending::<()>().await
    });
}

fn process_cpu() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

fn thread_cpu() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

fn rusage(who: i32) -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(who, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Removes the pinned data plane and the state directory, whatever happens.
struct Cleanup {
    pin_dir: std::path::PathBuf,
    state: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
