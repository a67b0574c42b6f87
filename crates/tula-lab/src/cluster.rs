//! The two-node lab's routing: a BIRD in the router and one in each node,
//! each in its own namespace with its own control socket, listening only on
//! lab addresses; the router installs one ECMP route per VIP over the nodes
//! that announce it. With `--cluster`, the etcd that holds the nodes'
//! config, in the router namespace on a lab address, its data in the run dir.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tula_bgp::bird::{NodeConfig, RouterConfig, Timers};

use crate::topology::{ipv6_of, Topology, VIP6_NET, VIP6_PREFIX};
use crate::{Lab, LabError};

/// The router's AS, and the one every node shares.
pub const ROUTER_ASN: u32 = 65000;
pub const NODE_ASN: u32 = 65001;

/// The BIRD processes of a lab (their names in pid and log files).
pub fn bird_names(topology: &Topology) -> Vec<String> {
    if topology.lbs < 2 {
        return Vec::new();
    }
    let mut names = vec!["bird-router".to_string()];
    names.extend(topology.nodes().map(|n| format!("bird-{}", Topology::node_label(n))));
    names
}

fn bird_binary() -> Result<PathBuf, LabError> {
    ["/usr/sbin/bird", "/usr/local/sbin/bird", "/usr/bin/bird"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| LabError::Config("bird is not installed (Debian package bird2; scripts/setup.sh installs it)".into()))
}

/// BIRD's control socket for `name` (`birdc -s SOCKET`).
pub fn control_socket(lab: &Lab, name: &str) -> PathBuf {
    lab.topology.run_dir().join(format!("{name}.ctl"))
}

fn start_bird(lab: &Lab, ns: &str, name: &str, config: &str) -> Result<(), LabError> {
    let path = lab.topology.run_dir().join(format!("{name}.conf"));
    std::fs::write(&path, config).map_err(|e| LabError::Io(format!("writing {}", path.display()), e))?;
    let mut cmd = tula_net::Netns::open(ns)?.command(bird_binary()?);
    cmd.arg("-f").arg("-c").arg(&path).arg("-s").arg(control_socket(lab, name));
    lab.spawn_daemon(cmd, name)
}

/// The router's BIRD: a session to each node; ECMP routes into the kernel.
pub fn start_router_bird(lab: &Lab) -> Result<(), LabError> {
    let topology = &lab.topology;
    let config = RouterConfig {
        asn: ROUTER_ASN,
        router_id: Topology::node_gateway(1),
        // One IPv4 and one IPv6 session per node.
        nodes: topology
            .nodes()
            .flat_map(|n| {
                let (gateway, node) = (Topology::node_gateway(n), Topology::node_addr(n));
                [(gateway.into(), node.into()), (ipv6_of(gateway).into(), ipv6_of(node).into())]
            })
            .collect(),
        node_asn: NODE_ASN,
        vip_prefix: (Ipv4Addr::new(203, 0, 113, 0), 24),
        vip_prefix6: Some((VIP6_NET, VIP6_PREFIX)),
        timers: Timers::default(),
        log: Some("stderr".into()),
    }
    .render()
    .map_err(|e| LabError::Config(e.to_string()))?;
    start_bird(lab, &topology.ns_router(), "bird-router", &config)
}

/// Node `n`'s BIRD: learns the daemon's announcement table, exports it to the router.
pub fn start_node_bird(lab: &Lab, n: u8) -> Result<(), LabError> {
    let config = NodeConfig {
        asn: NODE_ASN,
        peers: vec![Topology::node_gateway(n).into(), ipv6_of(Topology::node_gateway(n)).into()],
        peer_asn: ROUTER_ASN,
        local: Some(Topology::node_addr(n)),
        local6: Some(ipv6_of(Topology::node_addr(n))),
        table: tula_bgp::DEFAULT_TABLE,
        timers: Timers::default(),
        log: Some("stderr".into()),
    }
    .render()
    .map_err(|e| LabError::Config(e.to_string()))?;
    start_bird(lab, &lab.topology.ns_node(n), &format!("bird-{}", Topology::node_label(n)), &config)
}

/// The lab's etcd process (its name in pid and log files, and its data dir).
pub const ETCD: &str = "etcd";
/// etcd's client port.
pub const ETCD_PORT: u16 = 2379;

/// The lab's etcd client URL: the router's address toward node 1, which every node routes to.
pub fn etcd_url() -> String {
    format!("http://{}:{ETCD_PORT}", Topology::node_gateway(1))
}

/// Node `n`'s `[cluster]` section: the lab's etcd and the node's label as its name.
pub fn cluster_section(n: u8) -> String {
    format!("\n[cluster]\netcd = [\"{}\"]\nnode = \"{}\"\n", etcd_url(), Topology::node_label(n))
}

fn etcd_binary() -> Result<PathBuf, LabError> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| LabError::Config("etcd is not installed (Debian package etcd-server; scripts/setup.sh installs it)".into()))
}

impl Lab {
    /// Starts the lab's etcd (again, on the same data) in the router
    /// namespace, listening only on the lab address; returns once it answers.
    pub fn start_etcd(&self) -> Result<(), LabError> {
        let address = Topology::node_gateway(1);
        let client = etcd_url();
        let peer = format!("http://{address}:2380");
        let data = self.topology.run_dir().join(ETCD);
        let mut cmd = tula_net::Netns::open(&self.topology.ns_router())?.command(etcd_binary()?);
        cmd.args(["--name", "lab", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("lab={peer}"), "--initial-cluster-state", "new"])
            .args(["--log-level", "warn"]);
        self.spawn_daemon(cmd, ETCD)?;
        let router = tula_net::Netns::open(&self.topology.ns_router())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let healthy = router.run(|| {
                crate::http::Client::connect((address, ETCD_PORT).into(), Duration::from_secs(1))
                    .and_then(|mut c| c.request("/health", None, false))
                    .is_ok_and(|body| body.contains("true"))
            })?;
            if healthy {
                return Ok(());
            }
            if Instant::now() > deadline || !self.process_alive(ETCD) {
                return Err(LabError::Process(format!("the lab's etcd did not start; its log says:\n{}", self.log(ETCD))));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the lab's etcd (its data stays for [`Lab::start_etcd`]); returns once it is gone.
    pub fn kill_etcd(&self) {
        if let Some(pid) = self.pid(ETCD) {
            crate::lab::stop_process_group(pid);
            while self.process_alive(ETCD) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The nodes the router's kernel sends `vip` to now (its ECMP next hops).
    pub fn router_paths(&self, vip: impl Into<IpAddr>) -> Result<Vec<IpAddr>, LabError> {
        route_next_hops(&tula_net::Netns::open(&self.topology.ns_router())?, vip.into())
    }

    /// Waits until the router sends `vip` over exactly `paths` nodes; returns how long that took.
    pub fn wait_for_paths(&self, vip: impl Into<IpAddr>, paths: usize, timeout: Duration) -> Result<Duration, LabError> {
        let vip = vip.into();
        let started = Instant::now();
        loop {
            let now = self.router_paths(vip)?;
            if now.len() == paths {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(LabError::Process(format!(
                    "the router sends {vip} over {now:?}, not {paths} node(s), after {timeout:?}; BIRD says:\n{}\n{}",
                    self.log("bird-router"),
                    self.birdc("bird-router", &["show", "protocols"]).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `birdc` against the lab's BIRD `name` (bird-router, bird-lb, bird-lb2).
    pub fn birdc(&self, name: &str, args: &[&str]) -> Result<String, LabError> {
        let out = std::process::Command::new("birdc")
            .arg("-s")
            .arg(control_socket(self, name))
            .args(args)
            .output()
            .map_err(|e| LabError::Io("running birdc".into(), e))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Takes node `n`'s routed link down or up (its router side loses its
    /// carrier). Up again, it gets back its default route, which the kernel
    /// removed with the link.
    pub fn set_node_link(&self, n: u8, up: bool) -> Result<(), LabError> {
        let ns = tula_net::Netns::open(&self.topology.ns_node(n))?;
        ns.run(|| -> Result<(), LabError> {
            if !up {
                return Ok(tula_net::set_down("eth0")?);
            }
            tula_net::set_up("eth0")?;
            match tula_net::add_route(Ipv4Addr::UNSPECIFIED, 0, Some(Topology::node_gateway(n)), None) {
                Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
                other => Ok(other?),
            }
        })?
    }
}

/// The next hops of the host route to `vip` in namespace `ns` (several for an ECMP route).
pub fn route_next_hops(ns: &tula_net::Netns, vip: IpAddr) -> Result<Vec<IpAddr>, LabError> {
    let (family, host) = if vip.is_ipv4() { ("-4", 32) } else { ("-6", 128) };
    let out = ns
        .command("ip")
        .args([family, "route", "show", &format!("{vip}/{host}")])
        .output()
        .map_err(|e| LabError::Io("running ip route show".into(), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    Ok(words.windows(2).filter(|w| w[0] == "via").filter_map(|w| w[1].parse().ok()).collect())
}
