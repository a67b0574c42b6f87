//! IPv6 VIPs announced by BGP for real: the daemon's announcer keeps a /128
//! in its table, the node's BIRD (config from `tula bgp config`'s renderer)
//! exports it over an IPv6 session, and the router's BIRD installs it; a VIP
//! that loses its backends is withdrawn from the router.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tula_bgp::bird::{NodeConfig, RouterConfig, Timers};
use tula_bgp::{AnnounceOptions, Node, Readiness, VipReadiness};
use tula_net::Netns;

const VIP: &str = "2001:db8:113::10";
/// Outside the prefix the router accepts: announced by the node, never installed.
const STRAY_VIP: &str = "2001:db8:999::10";
const ROUTER: &str = "2001:db8:b6::1";
const NODE: &str = "2001:db8:b6::2";

/// The namespaces and files of one run, removed when it ends, pass or fail.
struct Rig {
    router: Option<Netns>,
    node: Option<Netns>,
    dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for ns in [self.router.take(), self.node.take()].into_iter().flatten() {
            let _ = ns.delete();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The BIRD processes, killed before the namespaces go.
struct Birds(Vec<Child>);

impl Drop for Birds {
    fn drop(&mut self) {
        for bird in &mut self.0 {
            let _ = bird.kill();
            let _ = bird.wait();
        }
    }
}

fn ip(ns: &Netns, args: &[&str]) -> String {
    let out = ns.command("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {args:?} in {}: {}", ns.name(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start_bird(birds: &mut Birds, dir: &std::path::Path, ns: &Netns, name: &str, config: &str) {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(&conf, config).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = ns
        .command("bird")
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(dir.join(format!("{name}.ctl")))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("bird (Debian package bird2) runs");
    birds.0.push(child);
}

/// The nodes the router sends `vip` to, as `ip -6 route` shows them.
fn router_paths(router: &Netns, vip: &str) -> Vec<String> {
    let hops = tula_lab::cluster::route_next_hops(router, vip.parse().unwrap()).unwrap();
    hops.iter().map(ToString::to_string).collect()
}

fn wait_for_paths(rig: &Rig, vip: &str, want: &[&str], timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = router_paths(rig.router.as_ref().unwrap(), vip);
        if now == want {
            return started.elapsed();
        }
        if started.elapsed() > timeout {
            let logs: Vec<String> = ["router", "node"]
                .iter()
                .map(|n| std::fs::read_to_string(rig.dir.join(format!("bird-{n}.log"))).unwrap_or_default())
                .collect();
            panic!("the router sends {vip} via {now:?}, not {want:?}, after {timeout:?}; BIRD logs:\n{}", logs.join("\n---\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_ipv6_vip_is_announced_over_an_ipv6_bgp_session_and_withdrawn_when_its_backends_are_down() {
    let tag = std::process::id() % 100_000;
    let dir = std::env::temp_dir().join(format!("tula-bgp6-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("pins")).unwrap();
    let mut rig = Rig { router: None, node: None, dir: dir.clone() };
    let (router_name, node_name) = (format!("tb6r-{tag}"), format!("tb6n-{tag}"));
    for name in [&router_name, &node_name] {
        if let Ok(stale) = Netns::open(name) {
            let _ = Command::new("ip").args(["netns", "delete", stale.name()]).status();
        }
    }
    rig.router = Some(Netns::create(&router_name).unwrap());
    rig.node = Some(Netns::create(&node_name).unwrap());
    let (router, node) = (rig.router.as_ref().unwrap(), rig.node.as_ref().unwrap());

    // One link, dual-stack: IPv4 only names the routers (BIRD's router id), the session is IPv6.
    let (r_if, n_if) = (format!("b6r{tag}"), format!("b6n{tag}"));
    ip(router, &["link", "add", &r_if, "type", "veth", "peer", "name", &n_if]);
    ip(router, &["link", "set", &n_if, "netns", node.name()]);
    for (ns, dev, v4, v6) in [(router, &r_if, "198.18.96.1/30", ROUTER), (node, &n_if, "198.18.96.2/30", NODE)] {
        ip(ns, &["addr", "add", v4, "dev", dev]);
        ip(ns, &["-6", "addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"]);
        ip(ns, &["link", "set", dev, "up"]);
    }

    // The daemon's announcer, with a VIP whose backends the test turns off and on.
    let has_backend = Arc::new(AtomicBool::new(true));
    let readiness = {
        let has_backend = has_backend.clone();
        move || Readiness {
            forwarding: true,
            not_forwarding: None,
            vips: vec![
                VipReadiness { name: "web6".into(), address: VIP.parse().unwrap(), has_backend: has_backend.load(Ordering::SeqCst) },
                VipReadiness { name: "stray".into(), address: STRAY_VIP.parse().unwrap(), has_backend: true },
            ],
        }
    };
    let options = AnnounceOptions {
        enabled: true,
        device: format!("tv6{tag}"),
        grace: Duration::from_secs(1),
        interval: Duration::from_millis(100),
        settle: Duration::ZERO,
        state_dir: Some(dir.clone()),
        pin_dir: dir.join("pins"),
        tula_bin: env!("CARGO_BIN_EXE_tula").into(),
        ..AnnounceOptions::default()
    };
    let announcer = node.run(|| Node::start(options, Box::new(readiness))).unwrap().expect("the announcer starts");
    let table = ip(node, &["-6", "route", "show", "table", &tula_bgp::DEFAULT_TABLE.to_string()]);
    assert!(table.contains(&format!("{VIP} dev tv6{tag}")), "the /128 is in the announcement table:\n{table}");
    assert_eq!(announcer.status().announced, [VIP, STRAY_VIP].map(|a| a.parse::<IpAddr>().unwrap()));

    let router_config = RouterConfig {
        asn: 65000,
        router_id: Ipv4Addr::new(198, 18, 96, 1),
        nodes: vec![(ROUTER.parse().unwrap(), NODE.parse().unwrap())],
        node_asn: 65001,
        vip_prefix: (Ipv4Addr::new(203, 0, 113, 0), 24),
        vip_prefix6: Some(("2001:db8:113::".parse().unwrap(), 64)),
        timers: Timers::default(),
        log: Some("stderr".into()),
    };
    let node_config = NodeConfig {
        asn: 65001,
        peers: vec![ROUTER.parse().unwrap()],
        peer_asn: 65000,
        local: Some(Ipv4Addr::new(198, 18, 96, 2)),
        local6: Some(NODE.parse().unwrap()),
        table: tula_bgp::DEFAULT_TABLE,
        timers: Timers::default(),
        log: Some("stderr".into()),
    };
    let mut birds = Birds(Vec::new());
    start_bird(&mut birds, &dir, router, "bird-router", &router_config.render().unwrap());
    start_bird(&mut birds, &dir, node, "bird-node", &node_config.render().unwrap());

    let took = wait_for_paths(&rig, VIP, &[NODE], Duration::from_secs(30));
    eprintln!("IPv6 VIP {VIP} installed on the router via {NODE} {:.2} s after the BIRDs started", took.as_secs_f64());
    assert!(router_paths(router, STRAY_VIP).is_empty(), "a VIP outside the router's IPv6 prefix is not installed");

    has_backend.store(false, Ordering::SeqCst);
    let took = wait_for_paths(&rig, VIP, &[], Duration::from_secs(10));
    eprintln!("withdrawn from the router {:.2} s after its backends went down", took.as_secs_f64());
    let status = announcer.status();
    let web6 = status.vips.iter().find(|v| v.vip == "web6").unwrap();
    assert_eq!(web6.reason.as_deref(), Some("VIP web6 has no healthy backend"));

    has_backend.store(true, Ordering::SeqCst);
    wait_for_paths(&rig, VIP, &[NODE], Duration::from_secs(10));

    node.run(|| announcer.withdraw_all()).unwrap();
    wait_for_paths(&rig, VIP, &[], Duration::from_secs(10));
    drop(birds);
}
