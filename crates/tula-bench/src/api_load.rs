//! The daemon under load: `tula serve` started in the control-plane
//! namespace with the generated config, its start time, its memory (RSS, and
//! the kernel memory of its maps), the latency of `GET /api/vips` and of
//! a backend drain under 100 concurrent clients, and of a `GET /metrics`
//! scrape alone.
//!
//! Each client is a thread in the namespace with its own keep-alive
//! connection (ureq), sending a fixed number of requests one after another;
//! all start together. A batch's latencies give its p50 and p99; figures are
//! medians over batches. Drains change the config (each is a Save and apply
//! with a revision), so every client drains a backend of its own, and the
//! first revision is rolled back to between batches (not timed). One client
//! alone is timed too: the latency without queueing.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use tula_dataplane::Dataplane;
use tula_net::Netns;

use crate::control_plane::{backend_addr, config_toml, load_options, mib, Scale, Workdir};
use crate::samples::{quantile, Samples};
use crate::size::Size;

/// Concurrent API clients.
pub const CLIENTS: usize = 100;
/// Idle time after the load before the RSS is read again (the issue asks for a minute at most).
const IDLE: Duration = Duration::from_secs(30);
/// How long after the drains [`ApiReport::rss_settled`] is read.
const SETTLE: Duration = Duration::from_secs(1);
const LISTEN: &str = "127.0.0.1:9100";

/// The `tula` executable: `TULA_BIN`, or `tula` in the target directory this
/// benchmark was built into (scripts/bench.sh and scripts/test.sh build it).
pub fn tula_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TULA_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("finding this executable");
    // target/<profile>/deps/<bench> -> target/<profile>/tula
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("tula"))
        .expect("this executable lives in target/<profile>/deps");
    assert!(
        candidate.exists(),
        "no tula executable at {}: build it first (cargo build -p tula, with --release for cargo bench) or set TULA_BIN",
        candidate.display()
    );
    candidate
}

/// A running `tula serve`; killed (and its data plane unloaded) on drop.
pub struct Daemon {
    child: Child,
    pub started_in: Duration,
    work: Workdir,
    ns_name: String,
}

impl Daemon {
    /// Starts `tula serve` in `ns` with `config_text` and waits until its API answers.
    pub fn start(ns: &Netns, work: Workdir, config_text: &str) -> Daemon {
        std::fs::write(work.config_path(), config_text).expect("writing the daemon's config");
        let log =
            std::fs::File::create(work.dir.join("daemon.log")).expect("creating the daemon log");
        let start = Instant::now();
        let child = ns
            .command(tula_bin())
            .arg("serve")
            .arg("--config")
            .arg(work.config_path())
            .arg("--state-dir")
            .arg(work.state_dir())
            .arg("--socket")
            .arg(work.dir.join("api.sock"))
            .arg("--unload-on-exit")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting tula serve");
        let mut daemon = Daemon {
            child,
            started_in: Duration::ZERO,
            work,
            ns_name: ns.name().to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        let agent = agent();
        loop {
            let answered = ns
                .run(|| {
                    agent
                        .get(url("/api/status"))
                        .call()
                        .is_ok_and(|r| r.status() == 200)
                })
                .expect("entering the namespace");
            if answered {
                break;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "tula serve exited ({status}) before answering; its log:\n{}",
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tula serve did not answer within 10 minutes; its log:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon.started_in = start.elapsed();
        daemon
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.dir.join("daemon.log")).unwrap_or_default()
    }

    /// CPU time the daemon has used so far (user and system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    /// (VmRSS, VmHWM) in bytes.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the daemon's /proc status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Kernel memory of the daemon's maps, as the kernel accounts it.
    pub fn map_memory(&self) -> u64 {
        Dataplane::open_pinned(&self.work.pin_dir)
            .expect("opening the daemon's pinned data plane")
            .map_memory()
            .expect("reading map memory")
            .iter()
            .map(|(_, bytes)| bytes)
            .sum()
    }

    /// SIGTERM, then waits: with --unload-on-exit the daemon removes its pins.
    fn stop(&mut self) {
        // SAFETY: a process this value started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "tula serve in {} did not stop on SIGTERM; killing it",
            self.ns_name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// User plus system CPU time of the process whose `stat` file is `path`, in seconds.
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    // Fields after the command name (which may hold spaces), from the 3rd: utime is the 14th, stime the 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / per_second as f64
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(900)))
        .build()
        .into()
}

fn url(path: &str) -> String {
    format!("http://{LISTEN}{path}")
}

/// Latency figures of one kind of request.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Milliseconds, one sample per batch of CLIENTS concurrent clients.
    pub p50: Samples,
    pub p99: Samples,
    pub requests_per_batch: usize,
    /// Milliseconds, one client alone, one sample per request.
    pub alone: Samples,
}

/// Figures of one daemon run.
#[derive(Debug, Clone)]
pub struct ApiReport {
    pub scale: Scale,
    pub started_in: Duration,
    /// RSS right after start, after the GET batches, after the drains, and the peak, in bytes.
    pub rss_started: u64,
    pub rss_after_gets: u64,
    pub rss: u64,
    pub rss_peak: u64,
    /// RSS a second after the drains: the writer trims the heap once its last
    /// reply is out, so `rss` may still hold the last apply's working set.
    pub rss_settled: u64,
    /// RSS after `idle` of nothing: what the daemon gives back.
    pub rss_idle: u64,
    pub idle: Duration,
    pub map_memory: u64,
    pub get_vips: Latency,
    pub drain: Latency,
    /// Bytes of one GET /api/vips answer on the wire (gzip).
    pub vips_body: usize,
    /// GET /metrics, one client alone, as Prometheus scrapes it: milliseconds
    /// to the last byte, one sample per request, and the answer's bytes.
    pub metrics: Samples,
    pub metrics_body: usize,
    /// CPU seconds used during each batch of GETs by the daemon, and by the
    /// clients (this process): where the batch's time goes on two cores.
    pub get_cpu_daemon: Samples,
    pub get_cpu_clients: Samples,
}

/// Sends `per_client` requests from each of CLIENTS threads in `ns`, all
/// starting together; `request(client, i)` makes request i of a client and
/// returns its status. Returns every latency in milliseconds.
fn load(
    ns: &Netns,
    per_client: usize,
    request: impl Fn(&ureq::Agent, usize, usize) -> u16 + Sync,
) -> Vec<f64> {
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let request = &request;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let barrier = barrier.clone();
                scope.spawn(move || {
                    ns.enter().expect("entering the namespace");
                    let agent = agent();
                    // One small request first, so the connection is open before timing
                    // (not /api/status: at 1,000 x 100 that is 12 MB and half a second each).
                    let _ = agent.get(url("/api/counters")).call();
                    barrier.wait();
                    (0..per_client)
                        .map(|i| {
                            let start = Instant::now();
                            let status = request(&agent, client, i);
                            let ms = start.elapsed().as_secs_f64() * 1e3;
                            assert!(
                                (200..300).contains(&status),
                                "client {client}, request {i}: HTTP {status}"
                            );
                            ms
                        })
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an API client panicked"))
            .collect()
    })
}

/// GET /api/vips as a poller would, gzip accepted, read to its last byte.
/// Decoding is left to [`VipsBody::decode`], outside the timed request: a
/// poller's own inflate is not the API's latency, and on two cores 100
/// clients inflating 5.6 MB each would take the daemon's CPU from under it.
fn get_vips(agent: &ureq::Agent) -> (u16, VipsBody) {
    let mut response = agent
        .get(url("/api/vips"))
        .header("Accept-Encoding", "gzip")
        .call()
        .expect("GET /api/vips");
    let mut wire = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut wire)
        .expect("reading GET /api/vips");
    let gzipped = response
        .headers()
        .get("Content-Encoding")
        .is_some_and(|v| v == "gzip");
    (response.status().as_u16(), VipsBody { wire, gzipped })
}

/// GET /metrics as Prometheus asks for it (gzip accepted), read to its last
/// byte: the status and the bytes on the wire.
fn get_metrics(agent: &ureq::Agent) -> (u16, usize) {
    let mut response = agent
        .get(url("/metrics"))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .header("Accept-Encoding", "gzip")
        .call()
        .expect("GET /metrics");
    let mut wire = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut wire)
        .expect("reading GET /metrics");
    (response.status().as_u16(), wire.len())
}

/// A GET /api/vips response as it came over the wire.
struct VipsBody {
    wire: Vec<u8>,
    gzipped: bool,
}

impl VipsBody {
    /// The body inflated (if gzipped): the JSON text.
    fn decode(&self) -> Vec<u8> {
        if !self.gzipped {
            return self.wire.clone();
        }
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&self.wire[..])
            .read_to_end(&mut json)
            .expect("decoding GET /api/vips's gzip");
        json
    }
}

fn record(latency: &mut Latency, mut values: Vec<f64>) {
    latency.requests_per_batch = values.len();
    latency.p50.push(quantile(&mut values, 0.50));
    latency.p99.push(quantile(&mut values, 0.99));
}

/// How many batches and requests one daemon run makes.
#[derive(Debug, Clone, Copy)]
pub struct ApiLoad {
    pub get_batches: usize,
    pub gets_per_client: usize,
    /// Each drain batch is CLIENTS applies one after another: slow at scale.
    pub drain_batches: usize,
    /// Requests of the one client alone.
    pub alone: usize,
}

/// The running revision, from `GET /api/config`.
fn running_revision(agent: &ureq::Agent) -> u64 {
    let mut response = agent
        .get(url("/api/config"))
        .call()
        .expect("GET /api/config");
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut body)
        .expect("reading GET /api/config");
    let value: serde_json::Value = serde_json::from_slice(&body).expect("GET /api/config is JSON");
    value["revision"]
        .as_u64()
        .expect("GET /api/config has a revision number")
}

fn drain(agent: &ureq::Agent, vip: u32, backend: std::net::Ipv4Addr) -> u16 {
    agent
        .post(url(&format!(
            "/api/vips/vip{vip:04}/backends/{backend}/drain"
        )))
        .header(
            "Authorization",
            format!("Bearer {}", crate::control_plane::BENCH_TOKEN),
        )
        .content_type("application/json")
        .send_empty()
        .expect("POST drain")
        .status()
        .as_u16()
}

fn rollback(agent: &ureq::Agent, revision: u64) {
    let status = agent
        .post(url(&format!("/api/revisions/{revision}/rollback")))
        .header(
            "Authorization",
            format!("Bearer {}", crate::control_plane::BENCH_TOKEN),
        )
        .content_type("application/json")
        .send_empty()
        .expect("POST rollback")
        .status()
        .as_u16();
    assert_eq!(
        status, 200,
        "rolling back to revision {revision} after the drains"
    );
}

/// Starts the daemon at `scale` in `ns`, reads its memory and loads its API.
pub fn measure(ns: &Netns, size: Size, scale: Scale, plan: ApiLoad) -> ApiReport {
    let options = load_options(scale, size);
    let work = Workdir::new(&format!("api{}x{}", scale.vips, scale.backends));
    let text = config_toml(
        scale,
        &options,
        &work.pin_dir,
        LISTEN.parse::<SocketAddr>().unwrap(),
    );
    let daemon = Daemon::start(ns, work, &text);
    let (rss_started, _) = daemon.rss();
    let map_memory = daemon.map_memory();
    let (vips_body, first_revision) = ns
        .run(|| {
            let agent = agent();
            let (_, body) = get_vips(&agent);
            serde_json::from_slice::<serde_json::Value>(&body.decode())
                .expect("GET /api/vips is JSON");
            (body.wire.len(), running_revision(&agent))
        })
        .expect("entering the namespace");

    let mut get_latency = Latency::default();
    let mut drain_latency = Latency::default();
    let mut metrics = Samples::default();
    let mut metrics_body = 0;
    // One client alone: no queueing behind other requests.
    ns.run(|| {
        let agent = agent();
        for i in 0..plan.alone {
            let start = Instant::now();
            let (status, body) = get_vips(&agent);
            get_latency.alone.push(start.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 200, "GET /api/vips");
            body.decode();
            let start = Instant::now();
            let status = drain(&agent, 0, backend_addr(i as u32 % scale.backends));
            assert_eq!(status, 200, "draining alone");
            drain_latency
                .alone
                .push(start.elapsed().as_secs_f64() * 1e3);
            let start = Instant::now();
            let (status, bytes) = get_metrics(&agent);
            metrics.push(start.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 200, "GET /metrics");
            metrics_body = bytes;
        }
        rollback(&agent, first_revision);
    })
    .expect("entering the namespace");

    let mut get_cpu_daemon = Samples::default();
    let mut get_cpu_clients = Samples::default();
    for _ in 0..plan.get_batches {
        let (daemon_before, clients_before) = (daemon.cpu_seconds(), cpu_seconds("/proc/self/stat"));
        let bodies = Mutex::new(Vec::new());
        let values = load(ns, plan.gets_per_client, |agent, _, _| {
            let (status, body) = get_vips(agent);
            bodies
                .lock()
                .expect("no client panics holding it")
                .push(body);
            status
        });
        get_cpu_daemon.push(daemon.cpu_seconds() - daemon_before);
        get_cpu_clients.push(cpu_seconds("/proc/self/stat") - clients_before);
        record(&mut get_latency, values);
        for body in bodies.into_inner().expect("no client panicked holding it") {
            body.decode();
        }
    }
    let (rss_after_gets, _) = daemon.rss();
    for _ in 0..plan.drain_batches {
        // Client c drains backend c mod backends of a VIP of its own (or shared by backends' worth of clients).
        let values = load(ns, 1, |agent, client, _| {
            let vip = (client * scale.vips as usize / CLIENTS) as u32;
            drain(agent, vip, backend_addr(client as u32 % scale.backends))
        });
        record(&mut drain_latency, values);
        ns.run(|| rollback(&agent(), first_revision))
            .expect("entering the namespace");
    }
    let (rss, rss_peak) = daemon.rss();
    std::thread::sleep(SETTLE);
    let (rss_settled, _) = daemon.rss();
    let idle = size.pick(Duration::from_secs(1), IDLE);
    std::thread::sleep(idle.saturating_sub(SETTLE));
    let (rss_idle, _) = daemon.rss();
    ApiReport {
        scale,
        started_in: daemon.started_in,
        rss_started,
        rss_after_gets,
        rss,
        rss_peak,
        rss_settled,
        rss_idle,
        idle,
        map_memory,
        get_vips: get_latency,
        drain: drain_latency,
        vips_body,
        metrics,
        metrics_body,
        get_cpu_daemon,
        get_cpu_clients,
    }
}

impl ApiReport {
    pub fn print(&self) {
        println!(
            "\ndaemon ({} serve) with {} VIPs x {} backends; {CLIENTS} concurrent keep-alive clients, medians over batches (min-max)",
            tula_bin().display(),
            self.scale.vips,
            self.scale.backends
        );
        println!(
            "  {:<52} {:>44}",
            "start until the API answers (config applied)",
            format!("{:.2} s", self.started_in.as_secs_f64())
        );
        println!(
            "  {:<52} {:>44}",
            "RSS after start / the GETs / the drains (peak)",
            format!(
                "{} / {} / {} ({})",
                mib(self.rss_started),
                mib(self.rss_after_gets),
                mib(self.rss),
                mib(self.rss_peak)
            )
        );
        println!(
            "  {:<52} {:>44}",
            format!("RSS {} s after the drains", SETTLE.as_secs()),
            mib(self.rss_settled)
        );
        println!(
            "  {:<52} {:>44}",
            format!("RSS after {} s idle", self.idle.as_secs()),
            mib(self.rss_idle)
        );
        println!(
            "  {:<52} {:>44}",
            "kernel map memory (memlock)",
            mib(self.map_memory)
        );
        println!(
            "  {:<52} {:>26} {:>22} {:>22}",
            "request", "one client alone, ms", "p50 ms", "p99 ms"
        );
        println!(
            "  {:<52} {:>44}",
            "CPU per GET batch: daemon / clients, no inflate (s)",
            format!(
                "{} / {}",
                self.get_cpu_daemon.show(2),
                self.get_cpu_clients.show(2)
            )
        );
        for (name, latency, decimals) in [
            (
                format!(
                    "GET /api/vips ({} KiB gzip, last byte)",
                    self.vips_body / 1024
                ),
                &self.get_vips,
                2,
            ),
            (
                "POST .../drain (a Save and apply)".to_string(),
                &self.drain,
                1,
            ),
        ] {
            println!(
                "  {:<52} {:>26} {:>22} {:>22}",
                format!("{name}, {} per batch", latency.requests_per_batch),
                latency.alone.show(decimals),
                latency.p50.show(decimals),
                latency.p99.show(decimals)
            );
        }
        println!(
            "  {:<52} {:>26}",
            format!("GET /metrics ({} KiB, a scrape)", self.metrics_body / 1024),
            self.metrics.show(2)
        );
    }
}
