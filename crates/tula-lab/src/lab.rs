//! The lab's processes and the demo: bringing it up and down, sending
//! traffic, and reading the counters that show where the traffic went.

use crate::capture::{Capture, FrameCounts};
use crate::topology::{Topology, VIP_L2, VIP_L3, VIP_PORT};
use crate::LabError;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tula_net::{self as net, Netns};

#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Namespace prefix; several labs can run side by side under different names.
    pub name: String,
    pub backends: u8,
    /// The `tula` executable, run inside the namespaces for the balancer,
    /// `tula decap setup` and the backends' HTTP servers.
    pub tula_bin: PathBuf,
}

/// A lab: its topology plus the processes it runs.
pub struct Lab {
    pub topology: Topology,
    tula_bin: PathBuf,
}

impl Lab {
    pub fn new(opts: &LabOptions) -> Result<Lab, LabError> {
        Ok(Lab { topology: Topology::new(&opts.name, opts.backends)?, tula_bin: opts.tula_bin.clone() })
    }

    fn ns(&self, name: &str) -> Result<Netns, LabError> {
        Ok(Netns::open(name)?)
    }

    /// Backend `i`'s decapsulation state and persistence files live here, so
    /// the lab never writes the host's /etc.
    pub fn decap_root(&self, i: u8) -> PathBuf {
        self.topology.run_dir().join(format!("be{i}"))
    }

    /// Builds the network, sets up the backends with `tula decap setup
    /// --method xdp`, starts their HTTP servers and the balancer.
    pub fn up(&self) -> Result<(), LabError> {
        self.topology.build()?;
        let result = self.start_processes();
        if result.is_err() {
            let _ = self.down();
        }
        result
    }

    fn start_processes(&self) -> Result<(), LabError> {
        let run_dir = self.topology.run_dir();
        std::fs::create_dir_all(&run_dir).map_err(|e| LabError::Io(format!("creating {}", run_dir.display()), e))?;
        for i in 1..=self.topology.backends {
            let ns = self.ns(&self.topology.ns_backend(i))?;
            let root = self.decap_root(i);
            std::fs::create_dir_all(&root).map_err(|e| LabError::Io(format!("creating {}", root.display()), e))?;
            let vips = [VIP_L3, VIP_L2].map(|v| v.to_string());
            let mut cmd = ns.command(&self.tula_bin);
            cmd.args(["decap", "setup", "--method", "xdp", "--interface", "eth0", "--root"])
                .arg(&root)
                .args(["--vip", &vips[0], "--vip", &vips[1]]);
            run_to_end(cmd, &format!("tula decap setup on {}", ns.name()))?;
            self.spawn_http(i)?;
        }
        crate::balancer::attach_peer_programs(&self.topology)?;
        let config = run_dir.join("tula.toml");
        let all: Vec<u8> = (1..=self.topology.backends).collect();
        std::fs::write(&config, crate::balancer::config_toml(&self.topology, &all))
            .map_err(|e| LabError::Io(format!("writing {}", config.display()), e))?;
        self.start_balancer()?;
        self.wait_ready()
    }

    /// Starts backend `i`'s HTTP server. It listens on the VIPs, and on the
    /// backend's own address for TCP and HTTP health checks, all on port 80.
    fn spawn_http(&self, i: u8) -> Result<(), LabError> {
        let name = format!("be{i}");
        let mut cmd = self.ns(&self.topology.ns_backend(i))?.command(&self.tula_bin);
        cmd.args(["lab", "http-server", "--name", &name]);
        for address in [VIP_L3, VIP_L2, Topology::backend_addr(i)] {
            cmd.arg("--listen").arg(SocketAddr::from((address, VIP_PORT)).to_string());
        }
        self.spawn_daemon(cmd, &name)
    }

    /// Stops backend `i`'s HTTP server (as if it crashed): its connections
    /// close and new ones are refused. Returns once the process is gone.
    pub fn stop_http(&self, i: u8) -> Result<(), LabError> {
        let name = format!("be{i}");
        let pid = self.pid(&name).ok_or_else(|| LabError::Process(format!("{name}'s HTTP server is not running")))?;
        stop_process_group(pid);
        let pid_path = self.topology.run_dir().join(format!("{name}.pid"));
        std::fs::remove_file(&pid_path).map_err(|e| LabError::Io(format!("removing {}", pid_path.display()), e))
    }

    /// Starts backend `i`'s HTTP server again; returns once it answers on the
    /// backend's own address (10 s at most).
    pub fn start_http(&self, i: u8) -> Result<(), LabError> {
        self.spawn_http(i)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let own = SocketAddr::from((Topology::backend_addr(i), VIP_PORT));
        let answered = self.ns(&self.topology.ns_backend(i))?.run(|| loop {
            if crate::http::get(own, Duration::from_secs(1)).is_ok() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        })?;
        if !answered {
            return Err(LabError::Process(format!(
                "the HTTP server on be{i} did not answer on {own}; its log says:\n{}",
                self.log(&format!("be{i}"))
            )));
        }
        Ok(())
    }

    /// Starts `tula serve` in the lb namespace.
    fn start_balancer(&self) -> Result<(), LabError> {
        let run_dir = self.topology.run_dir();
        let mut cmd = self.ns(&self.topology.ns_lb())?.command(&self.tula_bin);
        cmd.arg("serve").arg("--config").arg(run_dir.join("tula.toml")).arg("--state-dir").arg(run_dir.join("state"));
        cmd.arg("--socket").arg(self.api_socket());
        self.spawn_daemon(cmd, "lb")
    }

    /// The lab daemon's API socket: its own, so labs run side by side.
    pub fn api_socket(&self) -> std::path::PathBuf {
        self.topology.run_dir().join("api.sock")
    }

    /// Kills the daemon with SIGKILL and starts it again: forwarding must go on
    /// meanwhile (the data plane is pinned) and the new daemon adopts it.
    pub fn restart_balancer(&self) -> Result<(), LabError> {
        self.stop_balancer();
        self.start_balancer()?;
        self.wait_for_api(Instant::now() + Duration::from_secs(30))
    }

    /// Kills the daemon with SIGKILL and waits until it is gone; the pinned
    /// data plane goes on forwarding.
    pub fn stop_balancer(&self) {
        if let Some(pid) = self.pid("lb") {
            // SAFETY: a process group this lab started.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Runs the `tula` CLI inside the lb namespace, talking to the daemon over its socket.
    pub fn tula(&self, args: &[&str]) -> Result<String, LabError> {
        let mut cmd = self.ns(&self.topology.ns_lb())?.command(&self.tula_bin);
        cmd.args(args).env("TULA_SOCKET", self.api_socket()).env_remove("TULA_API");
        let out = cmd.output().map_err(|e| LabError::Io(format!("running tula {}", args.join(" ")), e))?;
        if !out.status.success() {
            return Err(LabError::Process(format!(
                "tula {} failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a long-running process in its own session, logging to the run dir.
    fn spawn_daemon(&self, mut cmd: std::process::Command, name: &str) -> Result<(), LabError> {
        use std::os::unix::process::CommandExt;
        let log_path = self.topology.run_dir().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| LabError::Io(format!("creating {}", log_path.display()), e))?;
        let err = log.try_clone().map_err(|e| LabError::Io("duplicating a log file".into(), e))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
        let child = cmd.spawn().map_err(|e| LabError::Io(format!("starting {name}"), e))?;
        let pid_path = self.topology.run_dir().join(format!("{name}.pid"));
        std::fs::write(&pid_path, child.id().to_string())
            .map_err(|e| LabError::Io(format!("writing {}", pid_path.display()), e))
    }

    /// Waits until the balancer says it is ready and every backend answers.
    fn wait_ready(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.wait_for_api(deadline)?;
        for i in 1..=self.topology.backends {
            let ns = self.ns(&self.topology.ns_backend(i))?;
            let answered = ns.run(|| loop {
                if crate::http::get((VIP_L3, VIP_PORT).into(), Duration::from_secs(1)).is_ok() {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            })?;
            if !answered {
                return Err(LabError::Process(format!(
                    "the HTTP server on be{i} did not answer; its log says:\n{}",
                    self.log(&format!("be{i}"))
                )));
            }
        }
        Ok(())
    }

    /// Waits until the daemon's API answers inside the lb namespace.
    fn wait_for_api(&self, deadline: Instant) -> Result<(), LabError> {
        let lb = self.ns(&self.topology.ns_lb())?;
        loop {
            let answered = lb.run(|| {
                crate::http::Client::connect(([127, 0, 0, 1], 9100).into(), Duration::from_secs(1))
                    .and_then(|mut c| c.request("/api/status", None, false))
                    .is_ok()
            })?;
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline || !self.process_alive("lb") {
                return Err(LabError::Process(format!(
                    "the lab's load balancer (tula serve) did not start; its log says:\n{}",
                    self.log("lb")
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.topology.run_dir().join(format!("{name}.pid"))).ok()?.trim().parse().ok()
    }

    fn process_alive(&self, name: &str) -> bool {
        // SAFETY: signal 0 only checks for existence.
        self.pid(name).is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid))
    }

    /// The last lines a lab process logged.
    pub fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.topology.run_dir().join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the lab's processes, undoes the backends' decap setup and removes
    /// every namespace. Safe to run on a lab that is partly up or already down.
    pub fn down(&self) -> Result<(), LabError> {
        let mut names = vec!["lb".to_string()];
        names.extend((1..=self.topology.backends).map(|i| format!("be{i}")));
        for name in &names {
            if let Some(pid) = self.pid(name) {
                stop_process_group(pid);
            }
        }
        let pin_dir = crate::balancer::pin_dir(&self.topology);
        if pin_dir.exists() {
            let mut cmd = std::process::Command::new(&self.tula_bin);
            cmd.args(["dataplane", "unload", "--pin-dir"]).arg(&pin_dir);
            run_to_end(cmd, "tula dataplane unload")?;
        }
        crate::balancer::remove_peer_programs(&self.topology)?;
        let existing = net::netns_list()?;
        for i in 1..=self.topology.backends {
            let ns_name = self.topology.ns_backend(i);
            let root = self.decap_root(i);
            if existing.contains(&ns_name) && root.join("var/lib/tula").exists() {
                let mut cmd = self.ns(&ns_name)?.command(&self.tula_bin);
                cmd.args(["decap", "teardown", "--root"]).arg(&root);
                let _ = run_to_end(cmd, &format!("tula decap teardown on {ns_name}"));
            }
        }
        self.topology.remove()?;
        let run_dir = self.topology.run_dir();
        if run_dir.exists() {
            std::fs::remove_dir_all(&run_dir).map_err(|e| LabError::Io(format!("removing {}", run_dir.display()), e))?;
        }
        Ok(())
    }

    /// Makes only these backends (numbers from 1) serve both VIPs; the others
    /// leave the rings and their flows move. Returns once the balancer applied it.
    pub fn set_active_backends(&self, backends: &[u8]) -> Result<(), LabError> {
        let desired = self.topology.run_dir().join("desired.toml");
        std::fs::write(&desired, crate::balancer::config_toml(&self.topology, backends))
            .map_err(|e| LabError::Io(format!("writing {}", desired.display()), e))?;
        self.tula(&["apply", "-f", &desired.to_string_lossy()])?;
        Ok(())
    }

    /// Counters of the links that tell where packets went.
    pub fn link_counters(&self) -> Result<LinkCounters, LabError> {
        let lb = self.ns(&self.topology.ns_lb())?.run(|| net::link_stats("eth0"))??;
        let router = self.ns(&self.topology.ns_router())?;
        let (from_lb, backends) = router.run(|| -> Result<_, LabError> {
            let from_lb = net::link_stats(Topology::ROUTER_LB_LINK)?;
            let mut backends = BTreeMap::new();
            for i in 1..=self.topology.backends {
                backends.insert(format!("be{i}"), net::link_stats(&Topology::router_backend_link(i))?);
            }
            Ok((from_lb, backends))
        })??;
        Ok(LinkCounters { lb_eth0: lb, router_lb: from_lb, router_backends: backends })
    }

    /// Sends `requests` HTTP requests, each on a new connection, from the
    /// client to `vip` and counts which backend answered.
    pub fn send_requests(&self, vip: Ipv4Addr, requests: usize) -> Result<BTreeMap<String, usize>, LabError> {
        let client = self.ns(&self.topology.ns_client())?;
        client.run(|| {
            let mut spread = BTreeMap::new();
            for n in 0..requests {
                let body = crate::http::get((vip, VIP_PORT).into(), Duration::from_secs(5))
                    .map_err(|e| LabError::Io(format!("request {} of {requests} to {vip}:{VIP_PORT}", n + 1), e))?;
                *spread.entry(body.trim().to_string()).or_insert(0) += 1;
            }
            Ok(spread)
        })?
    }

    /// Runs the demo traffic and gathers the evidence.
    pub fn demo(&self, requests: usize) -> Result<DemoReport, LabError> {
        let router = self.ns(&self.topology.ns_router())?;
        let mut capture = router.run(|| Capture::open(Topology::ROUTER_LB_LINK))??;
        capture.drain();
        let before = self.link_counters()?;
        let l3 = self.send_requests(VIP_L3, requests)?;
        // Give the last replies time to be counted.
        std::thread::sleep(Duration::from_millis(200));
        let after = self.link_counters()?;
        let ipip = capture.drain();
        let l2 = self.send_requests(VIP_L2, requests / 5)?;
        Ok(DemoReport { requests, l3_spread: l3, l2_spread: l2, before, after, lb_to_router: ipip })
    }
}

/// Link counters of the lab at one moment.
#[derive(Debug, Clone)]
pub struct LinkCounters {
    /// The load balancer's only routed interface.
    pub lb_eth0: net::LinkStats,
    /// The router's end of the load balancer's link.
    pub router_lb: net::LinkStats,
    /// The router's end of each backend's link.
    pub router_backends: BTreeMap<String, net::LinkStats>,
}

/// What the demo saw.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub requests: usize,
    pub l3_spread: BTreeMap<String, usize>,
    pub l2_spread: BTreeMap<String, usize>,
    pub before: LinkCounters,
    pub after: LinkCounters,
    pub lb_to_router: FrameCounts,
}

impl DemoReport {
    /// Packets the load balancer received and sent during the Layer 3 run.
    pub fn lb_packets(&self) -> (u64, u64) {
        let (a, b) = (&self.after.lb_eth0, &self.before.lb_eth0);
        (a.rx_packets - b.rx_packets, a.tx_packets - b.tx_packets)
    }

    /// Per backend: packets the router sent to it and received from it.
    pub fn backend_packets(&self) -> BTreeMap<String, (u64, u64)> {
        self.after
            .router_backends
            .iter()
            .map(|(name, a)| {
                let b = &self.before.router_backends[name];
                (name.clone(), (a.tx_packets - b.tx_packets, a.rx_packets - b.rx_packets))
            })
            .collect()
    }

    /// The human-readable account the demo prints.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let spread = |out: &mut String, title: &str, spread: &BTreeMap<String, usize>| {
            let total: usize = spread.values().sum();
            let _ = writeln!(out, "{title}");
            for (name, n) in spread {
                let _ = writeln!(out, "  {name:<6} {n:>5} requests  {:>5.1}%", 100.0 * *n as f64 / total.max(1) as f64);
            }
        };
        spread(
            &mut out,
            &format!("Layer 3 DSR (IPIP): {} HTTP requests from the client to {VIP_L3}:{VIP_PORT}", self.requests),
            &self.l3_spread,
        );
        let (lb_rx, lb_tx) = self.lb_packets();
        let _ = writeln!(out, "\nReplies bypass the load balancer:");
        let _ = writeln!(out, "  load balancer eth0: {lb_rx} packets in, {lb_tx} packets out");
        let mut replies = 0;
        for (name, (to, from)) in self.backend_packets() {
            replies += from;
            let _ = writeln!(out, "  router <-> {name}: {to} packets to it (requests), {from} packets from it (replies, straight to the client)");
        }
        let _ = writeln!(
            out,
            "  {replies} reply packets went backend -> router -> client; the load balancer sent {lb_tx}, all of them forwarded requests."
        );
        let c = &self.lb_to_router;
        let _ = writeln!(out, "\nLoad balancer -> router link: {} of {} IPv4 frames were IPIP (IPv4 protocol 4):", c.ipip, c.ipv4);
        for ((src, dst), n) in &c.ipip_pairs {
            let _ = writeln!(out, "  outer {src} -> {dst}: {n}");
        }
        let _ = writeln!(out);
        spread(
            &mut out,
            &format!("Layer 2 DSR (MAC rewrite on the shared segment): {} requests to {VIP_L2}:{VIP_PORT}", self.requests / 5),
            &self.l2_spread,
        );
        out
    }
}

fn run_to_end(mut cmd: std::process::Command, what: &str) -> Result<(), LabError> {
    let out = cmd.output().map_err(|e| LabError::Io(format!("running {what}"), e))?;
    if !out.status.success() {
        return Err(LabError::Process(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// SIGTERM the process group, then SIGKILL whatever is left after a moment.
fn stop_process_group(pid: i32) {
    // SAFETY: signals to a process group the lab started.
    unsafe {
        libc::kill(-pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}
