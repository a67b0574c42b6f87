//! The lab's processes and the demo: bringing it up and down, sending
//! traffic, and reading the counters that show where the traffic went.

use crate::capture::{Capture, FrameCounts};
use crate::topology::{Topology, VIP6, VIP_L2, VIP_L3, VIP_MIXED, VIP_PORT};
use crate::LabError;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
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
    /// Also run an etcd in the router namespace and make the nodes one
    /// cluster whose config lives in it (`tula lab --lbs 2 --cluster`).
    pub etcd: bool,
}

/// A lab: its topology plus the processes it runs.
pub struct Lab {
    pub topology: Topology,
    tula_bin: PathBuf,
    /// Whether it runs an etcd that holds the nodes' config.
    pub etcd: bool,
    /// More arguments for `tula serve` (a test's shorter timings).
    serve_args: Vec<String>,
}

impl Lab {
    pub fn new(opts: &LabOptions) -> Result<Lab, LabError> {
        Lab::cluster(opts, 1)
    }

    /// A lab with `lbs` load-balancer nodes; two are announced by BGP
    /// through BIRD to a router doing ECMP.
    pub fn cluster(opts: &LabOptions, lbs: u8) -> Result<Lab, LabError> {
        Ok(Lab {
            topology: Topology::cluster(&opts.name, opts.backends, lbs)?,
            tula_bin: opts.tula_bin.clone(),
            etcd: opts.etcd,
            serve_args: Vec::new(),
        })
    }

    /// Starts the balancers with these arguments after `tula serve`'s own.
    pub fn with_serve_args(mut self, args: &[&str]) -> Lab {
        self.serve_args = args.iter().map(|a| a.to_string()).collect();
        self
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
            let mut cmd = ns.command(&self.tula_bin);
            cmd.args(["decap", "setup", "--method", "xdp", "--interface", "eth0", "--root"]).arg(&root);
            let vips: [IpAddr; 4] = [VIP_L3.into(), VIP_L2.into(), VIP_MIXED.into(), VIP6.into()];
            for vip in vips {
                cmd.arg("--vip").arg(vip.to_string());
            }
            run_to_end(cmd, &format!("tula decap setup on {}", ns.name()))?;
            self.spawn_http(i)?;
        }
        crate::balancer::attach_peer_programs(&self.topology)?;
        let all: Vec<u8> = (1..=self.topology.backends).collect();
        if self.topology.lbs > 1 {
            crate::cluster::start_router_bird(self)?;
        }
        if self.etcd {
            self.start_etcd()?;
        }
        for n in self.topology.nodes() {
            let config = self.node_config_path(n);
            let mut toml = crate::balancer::node_config_toml(&self.topology, n, &all, crate::balancer::NO_CHECK);
            if self.etcd {
                toml.push_str(&crate::cluster::cluster_section(n));
            }
            std::fs::write(&config, toml).map_err(|e| LabError::Io(format!("writing {}", config.display()), e))?;
            self.start_balancer_on(n)?;
            if self.topology.lbs > 1 {
                crate::cluster::start_node_bird(self, n)?;
            }
        }
        self.wait_ready()
    }

    /// Node `n`'s config file.
    pub fn node_config_path(&self, n: u8) -> PathBuf {
        let run_dir = self.topology.run_dir();
        match n {
            1 => run_dir.join("tula.toml"),
            n => run_dir.join(format!("tula-{}.toml", Topology::node_label(n))),
        }
    }

    /// Node `n`'s state directory (revisions, the drained mark).
    pub fn node_state_dir(&self, n: u8) -> PathBuf {
        let run_dir = self.topology.run_dir();
        match n {
            1 => run_dir.join("state"),
            n => run_dir.join(format!("state-{}", Topology::node_label(n))),
        }
    }

    /// Starts backend `i`'s HTTP server. It listens on the VIPs, and on the
    /// backend's own address for TCP and HTTP health checks, all on port 80.
    fn spawn_http(&self, i: u8) -> Result<(), LabError> {
        let name = format!("be{i}");
        let mut cmd = self.ns(&self.topology.ns_backend(i))?.command(&self.tula_bin);
        cmd.args(["lab", "http-server", "--name", &name]);
        let addresses: [IpAddr; 6] = [
            VIP_L3.into(),
            VIP_L2.into(),
            VIP6.into(),
            VIP_MIXED.into(),
            Topology::backend_addr(i).into(),
            Topology::backend_addr6(i).into(),
        ];
        for address in addresses {
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

    /// Starts `tula serve` on node `n` (with BGP announcements when the lab
    /// has several nodes).
    pub fn start_balancer_on(&self, n: u8) -> Result<(), LabError> {
        let mut cmd = self.ns(&self.topology.ns_node(n))?.command(&self.tula_bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(self.node_config_path(n))
            .arg("--state-dir")
            .arg(self.node_state_dir(n));
        cmd.arg("--socket").arg(self.node_api_socket(n));
        cmd.args(&self.serve_args);
        if self.topology.lbs > 1 {
            cmd.arg("--bgp");
        }
        self.spawn_daemon(cmd, &Topology::node_label(n))
    }

    /// Kills node `n`'s daemon with SIGKILL; returns once it is gone. Its
    /// pinned data plane forwards on.
    pub fn kill_balancer(&self, n: u8) -> Result<(), LabError> {
        let label = Topology::node_label(n);
        let pid = self.pid(&label).ok_or_else(|| LabError::Process(format!("{label}'s daemon is not running")))?;
        // SAFETY: a process group this lab started.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The lab daemon's API socket: its own, so labs run side by side.
    pub fn api_socket(&self) -> std::path::PathBuf {
        self.node_api_socket(1)
    }

    /// Node `n`'s daemon API socket.
    pub fn node_api_socket(&self, n: u8) -> std::path::PathBuf {
        match n {
            1 => self.topology.run_dir().join("api.sock"),
            n => self.topology.run_dir().join(format!("api-{}.sock", Topology::node_label(n))),
        }
    }

    /// Kills the daemon with SIGKILL and starts it again: forwarding must go on
    /// meanwhile (the data plane is pinned) and the new daemon adopts it.
    pub fn restart_balancer(&self) -> Result<(), LabError> {
        self.restart_balancer_on(1)
    }

    /// Kills the (first) daemon with SIGKILL and waits until it is gone; the
    /// pinned data plane goes on forwarding. Nothing to do if it is not running.
    pub fn stop_balancer(&self) {
        if self.pid(&Topology::node_label(1)).is_some() {
            let _ = self.kill_balancer(1);
        }
    }

    /// [`Lab::restart_balancer`] on node `n`.
    pub fn restart_balancer_on(&self, n: u8) -> Result<(), LabError> {
        if self.pid(&Topology::node_label(n)).is_some() {
            self.kill_balancer(n)?;
        }
        self.start_balancer_on(n)?;
        self.wait_for_api_on(n, Instant::now() + Duration::from_secs(30))
    }

    /// Runs the `tula` CLI inside the lb namespace, talking to the daemon over its socket.
    pub fn tula(&self, args: &[&str]) -> Result<String, LabError> {
        self.tula_on(1, args)
    }

    /// Runs the `tula` CLI inside node `n`'s namespace, against its daemon.
    pub fn tula_on(&self, n: u8, args: &[&str]) -> Result<String, LabError> {
        let mut cmd = self.ns(&self.topology.ns_node(n))?.command(&self.tula_bin);
        cmd.args(args).env("TULA_SOCKET", self.node_api_socket(n)).env_remove("TULA_API");
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
    pub(crate) fn spawn_daemon(&self, mut cmd: std::process::Command, name: &str) -> Result<(), LabError> {
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
        for n in self.topology.nodes() {
            self.wait_for_api_on(n, deadline)?;
        }
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
        if self.topology.lbs > 1 {
            for vip in [VIP_L3, VIP_L2] {
                self.wait_for_paths(vip, usize::from(self.topology.lbs), Duration::from_secs(30))?;
            }
        }
        Ok(())
    }

    /// Waits until node `n`'s daemon API answers inside its namespace.
    pub fn wait_for_api_on(&self, n: u8, deadline: Instant) -> Result<(), LabError> {
        let label = Topology::node_label(n);
        let lb = self.ns(&self.topology.ns_node(n))?;
        loop {
            let answered = lb.run(|| {
                crate::http::Client::connect(([127, 0, 0, 1], 9100).into(), Duration::from_secs(1))
                    .and_then(|mut c| c.request("/api/status", None, false))
                    .is_ok()
            })?;
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline || !self.process_alive(&label) {
                return Err(LabError::Process(format!(
                    "the lab's load balancer {label} (tula serve) did not start; its log says:\n{}",
                    self.log(&label)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of the lab process `name` (e.g. `etcd`, `lb2`), if it was started.
    pub fn pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.topology.run_dir().join(format!("{name}.pid"))).ok()?.trim().parse().ok()
    }

    pub(crate) fn process_alive(&self, name: &str) -> bool {
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
        let mut names: Vec<String> = self.topology.nodes().map(Topology::node_label).collect();
        names.extend((1..=self.topology.backends).map(|i| format!("be{i}")));
        names.extend(crate::cluster::bird_names(&self.topology));
        names.push(crate::cluster::ETCD.to_string());
        for name in &names {
            if let Some(pid) = self.pid(name) {
                stop_process_group(pid);
            }
        }
        // A stopped daemon's holder keeps its announcements for the grace time; none is wanted now.
        for n in self.topology.nodes() {
            tula_bgp::hold::stop_previous(&self.node_state_dir(n).join(tula_bgp::hold::PID_FILE));
        }
        for n in self.topology.nodes() {
            let pin_dir = crate::balancer::node_pin_dir(&self.topology, n);
            if pin_dir.exists() {
                let mut cmd = std::process::Command::new(&self.tula_bin);
                cmd.args(["dataplane", "unload", "--pin-dir"]).arg(&pin_dir);
                run_to_end(cmd, "tula dataplane unload")?;
            }
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
        for n in self.topology.nodes() {
            let desired = self.topology.run_dir().join(format!("desired-{}.toml", Topology::node_label(n)));
            let toml = crate::balancer::node_config_toml(&self.topology, n, backends, crate::balancer::NO_CHECK);
            std::fs::write(&desired, toml).map_err(|e| LabError::Io(format!("writing {}", desired.display()), e))?;
            self.tula_on(n, &["apply", "-f", &desired.to_string_lossy()])?;
        }
        Ok(())
    }

    /// Counters of the links that tell where packets went.
    pub fn link_counters(&self) -> Result<LinkCounters, LabError> {
        let lb = self.ns(&self.topology.ns_lb())?.run(|| net::link_stats("eth0"))??;
        let mut lb_nodes = BTreeMap::new();
        for n in self.topology.nodes() {
            let stats = self.ns(&self.topology.ns_node(n))?.run(|| net::link_stats("eth0"))??;
            lb_nodes.insert(Topology::node_label(n), stats);
        }
        let router = self.ns(&self.topology.ns_router())?;
        let (from_lb, backends) = router.run(|| -> Result<_, LabError> {
            let from_lb = net::link_stats(Topology::ROUTER_LB_LINK)?;
            let mut backends = BTreeMap::new();
            for i in 1..=self.topology.backends {
                backends.insert(format!("be{i}"), net::link_stats(&Topology::router_backend_link(i))?);
            }
            Ok((from_lb, backends))
        })??;
        Ok(LinkCounters { lb_eth0: lb, lb_nodes, router_lb: from_lb, router_backends: backends })
    }

    /// Sends `requests` HTTP requests, each on a new connection, from the
    /// client to `vip` and counts which backend answered.
    pub fn send_requests(&self, vip: impl Into<IpAddr>, requests: usize) -> Result<BTreeMap<String, usize>, LabError> {
        let client = self.ns(&self.topology.ns_client())?;
        let vip = SocketAddr::new(vip.into(), VIP_PORT);
        client.run(|| {
            let mut spread = BTreeMap::new();
            for n in 0..requests {
                let body = crate::http::get(vip, Duration::from_secs(5))
                    .map_err(|e| LabError::Io(format!("request {} of {requests} to {vip}", n + 1), e))?;
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
        capture.drain();
        let ipv6 = self.send_requests(VIP6, requests / 5)?;
        let mixed = self.send_requests(VIP_MIXED, requests / 5)?;
        std::thread::sleep(Duration::from_millis(200));
        let tunnels6 = capture.drain();
        Ok(DemoReport {
            requests,
            l3_spread: l3,
            l2_spread: l2,
            ipv6_spread: ipv6,
            mixed_spread: mixed,
            before,
            after,
            lb_to_router: ipip,
            lb_to_router6: tunnels6,
        })
    }
}

/// Link counters of the lab at one moment.
#[derive(Debug, Clone)]
pub struct LinkCounters {
    /// The (first) load balancer's only routed interface.
    pub lb_eth0: net::LinkStats,
    /// Every load-balancer node's routed interface, by node (lb, lb2).
    pub lb_nodes: BTreeMap<String, net::LinkStats>,
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
    /// Requests to the IPv6 VIP (IP6IP6), then to the IPv4 VIP with IPv6 backends.
    pub ipv6_spread: BTreeMap<String, usize>,
    pub mixed_spread: BTreeMap<String, usize>,
    pub before: LinkCounters,
    pub after: LinkCounters,
    pub lb_to_router: FrameCounts,
    /// The load balancer -> router link during the IPv6 and mixed runs.
    pub lb_to_router6: FrameCounts,
}

impl DemoReport {
    /// Packets the load balancer received and sent during the Layer 3 run.
    pub fn lb_packets(&self) -> (u64, u64) {
        self.node_packets().values().fold((0, 0), |(rx, tx), (r, t)| (rx + r, tx + t))
    }

    /// Per load-balancer node: packets it received and sent.
    pub fn node_packets(&self) -> BTreeMap<String, (u64, u64)> {
        self.after
            .lb_nodes
            .iter()
            .map(|(name, a)| {
                let b = &self.before.lb_nodes[name];
                (name.clone(), (a.rx_packets - b.rx_packets, a.tx_packets - b.tx_packets))
            })
            .collect()
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
        if self.after.lb_nodes.len() > 1 {
            let _ = writeln!(out, "  The router spreads the flows over {} load balancers (ECMP over their BGP routes):", self.after.lb_nodes.len());
            for (node, (rx, tx)) in self.node_packets() {
                let _ = writeln!(out, "  load balancer {node} eth0: {rx} packets in, {tx} packets out");
            }
        } else {
            let _ = writeln!(out, "  load balancer eth0: {lb_rx} packets in, {lb_tx} packets out");
        }
        let mut replies = 0;
        for (name, (to, from)) in self.backend_packets() {
            replies += from;
            let _ = writeln!(out, "  router <-> {name}: {to} packets to it (requests), {from} packets from it (replies, straight to the client)");
        }
        let _ = writeln!(
            out,
            "  {replies} reply packets went backend -> router -> client; the load balancers sent {lb_tx}, all of them forwarded requests."
        );
        let c = &self.lb_to_router;
        // The capture runs on the first node's link only.
        let link = if self.after.lb_nodes.len() > 1 { "Load balancer lb -> router link" } else { "Load balancer -> router link" };
        let _ = writeln!(out, "\n{link}: {} of {} IPv4 frames were IPIP (IPv4 protocol 4):", c.ipip, c.ipv4);
        for ((src, dst), n) in &c.ipip_pairs {
            let _ = writeln!(out, "  outer {src} -> {dst}: {n}");
        }
        let _ = writeln!(out);
        spread(
            &mut out,
            &format!("Layer 2 DSR (MAC rewrite on the shared segment): {} requests to {VIP_L2}:{VIP_PORT}", self.requests / 5),
            &self.l2_spread,
        );
        let _ = writeln!(out);
        let v6 = SocketAddr::from((VIP6, VIP_PORT));
        spread(&mut out, &format!("IPv6 (IP6IP6): {} requests to {v6}", self.requests / 5), &self.ipv6_spread);
        spread(
            &mut out,
            &format!("IPv4 VIP, IPv6 backends (IPv4 in IPv6): {} requests to {VIP_MIXED}:{VIP_PORT}", self.requests / 5),
            &self.mixed_spread,
        );
        let c = &self.lb_to_router6;
        let _ = writeln!(out, "\n{link}: {} IPv6 tunnel frames (next header 41 IP6IP6, 4 IPv4 in IPv6):", c.ip6_tunnel);
        for ((src, dst, next), n) in &c.ip6_tunnel_pairs {
            let _ = writeln!(out, "  outer {src} -> {dst}, next header {next}: {n}");
        }
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
pub(crate) fn stop_process_group(pid: i32) {
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
