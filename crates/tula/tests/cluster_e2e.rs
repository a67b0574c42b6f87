//! Scale-out end to end: two load-balancer nodes announce the VIPs by BGP
//! through their own BIRD to a router BIRD that spreads flows over them by
//! ECMP (5-tuple hash), all started by the test in namespaces.
//!
//! Under 200 long-lived keep-alive connections and a stream of new ones:
//! a node killed (daemon SIGKILLed, link down) and brought back; a node
//! drained and resumed; every backend of a VIP down as one node sees it; a
//! daemon killed alone (its pinned data plane forwards on), restarted within
//! the BGP grace and then killed for good.
//! The figures are printed (`cargo test -p tula --test cluster_e2e -- --nocapture`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tula_lab::topology::{ipv6_of, Topology, VIP6, VIP_L2, VIP_L3, VIP_PORT};
mod support;
use support::TestLab;

/// The labs of this file are heavy: one at a time.
static ONE_LAB: Mutex<()> = Mutex::new(());

const LONG_LIVED: usize = 200;
const WORKERS: usize = 8;
/// The BGP hold time the lab configures (tula_bgp::bird::Timers::default).
const HOLD: Duration = Duration::from_secs(3);
/// A request that needed a SYN retransmission (1 s) saw a gap in forwarding.
const SLOW: Duration = Duration::from_millis(900);

fn web() -> SocketAddr {
    (VIP_L3, VIP_PORT).into()
}

/// One long-lived connection's fate.
#[derive(Debug, Clone, Default)]
struct Conn {
    backend: String,
    requests: u64,
    /// When (since the load started) and how it failed.
    error: Option<(Duration, String)>,
}

/// A new connection's one request.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    at: Duration,
    took: Duration,
    ok: bool,
}

/// 200 keep-alive connections each sending a request every half second, and
/// a new connection every 25 ms, from the client namespace, until stopped.
struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<Conn>>>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(lab: &TestLab) -> Load {
        let ns = lab.topology.ns_client();
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(vec![Conn::default(); LONG_LIVED]));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let ready = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for worker in 0..WORKERS {
            let (ns, stop, conns, ready) = (ns.clone(), stop.clone(), conns.clone(), ready.clone());
            threads.push(std::thread::spawn(move || {
                tula_net::Netns::open(&ns).unwrap().enter().unwrap();
                let mine: Vec<usize> = (worker..LONG_LIVED).step_by(WORKERS).collect();
                let mut clients = Vec::new();
                for &i in &mine {
                    let mut client = tula_lab::http::Client::connect(web(), Duration::from_secs(15)).expect("connecting a long-lived connection");
                    let backend = client.request("/", None, true).expect("the first request of a long-lived connection");
                    conns.lock().unwrap()[i].backend = backend.trim().to_string();
                    clients.push((i, Some(client)));
                    ready.fetch_add(1, Ordering::SeqCst);
                }
                while !stop.load(Ordering::SeqCst) {
                    for (i, slot) in clients.iter_mut() {
                        let Some(client) = slot else { continue };
                        let result = client.request("/", None, true);
                        let mut conns = conns.lock().unwrap();
                        let conn = &mut conns[*i];
                        match result {
                            Ok(body) if body.trim() == conn.backend => conn.requests += 1,
                            Ok(body) => {
                                conn.error = Some((started.elapsed(), format!("answered by {} instead of {}", body.trim(), conn.backend)));
                                *slot = None;
                            }
                            Err(e) => {
                                conn.error = Some((started.elapsed(), e.to_string()));
                                *slot = None;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }));
        }
        {
            let (ns, stop, attempts) = (ns.clone(), stop.clone(), attempts.clone());
            threads.push(std::thread::spawn(move || {
                tula_net::Netns::open(&ns).unwrap().enter().unwrap();
                while !stop.load(Ordering::SeqCst) {
                    let at = started.elapsed();
                    let ok = tula_lab::http::get(web(), Duration::from_secs(3)).is_ok();
                    attempts.lock().unwrap().push(Attempt { at, took: started.elapsed() - at, ok });
                    std::thread::sleep(Duration::from_millis(25));
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while ready.load(Ordering::SeqCst) < LONG_LIVED {
            assert!(Instant::now() < deadline, "only {} of {LONG_LIVED} connections opened", ready.load(Ordering::SeqCst));
            std::thread::sleep(Duration::from_millis(20));
        }
        Load { started, stop, conns, attempts, threads }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn stop(mut self) -> (Vec<Conn>, Vec<Attempt>) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            thread.join().expect("a load thread panicked");
        }
        let conns = self.conns.lock().unwrap().clone();
        let attempts = self.attempts.lock().unwrap().clone();
        (conns, attempts)
    }

    /// Requests each long-lived connection has completed so far.
    fn progress(&self) -> Vec<u64> {
        self.conns.lock().unwrap().iter().map(|c| c.requests).collect()
    }

    /// Waits until every connection alive at `before` (its progress then) has
    /// completed a request since, or failed; returns those that failed since
    /// `from` or made no progress within `timeout`.
    fn settle(&self, before: &[u64], from: Duration, timeout: Duration) -> Vec<Conn> {
        let deadline = Instant::now() + timeout;
        loop {
            let conns = self.conns.lock().unwrap().clone();
            let open: Vec<&Conn> = conns.iter().zip(before).filter(|(c, b)| c.error.is_none() && c.requests <= **b).map(|(c, _)| c).collect();
            if open.is_empty() || Instant::now() > deadline {
                let stuck = open.into_iter().cloned().map(|mut c| {
                    c.error = Some((Duration::ZERO, "no request completed".into()));
                    c
                });
                let failed = conns.iter().filter(|c| c.error.as_ref().is_some_and(|(at, _)| *at >= from)).cloned();
                return failed.chain(stuck).collect();
            }
            drop(conns);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// New connections that started between `from` and `to` and failed or needed a retransmission.
    fn bad_attempts_between(&self, from: Duration, to: Duration) -> Vec<Attempt> {
        self.attempts.lock().unwrap().iter().filter(|a| (from..to).contains(&a.at) && (!a.ok || a.took > SLOW)).copied().collect()
    }
}

/// Packets each node received on its routed link during `f`.
fn node_packets(lab: &TestLab, f: impl FnOnce()) -> Vec<u64> {
    let before = lab.link_counters().unwrap();
    f();
    let after = lab.link_counters().unwrap();
    lab.topology.nodes().map(|n| {
        let label = Topology::node_label(n);
        after.lb_nodes[&label].rx_packets - before.lb_nodes[&label].rx_packets
    }).collect()
}

fn survival(failed: usize, of: usize) -> f64 {
    100.0 * (of - failed) as f64 / of as f64
}

#[test]
fn a_node_killed_with_its_link_down_and_brought_back_keeps_99_percent_of_flows() {
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let lab = TestLab::cluster("fail", 3, 2);
    let node1 = IpAddr::from(Topology::node_addr(1));
    let load = Load::start(&lab);
    let spread = node_packets(&lab, || std::thread::sleep(Duration::from_secs(2)));
    println!("before the failure: packets in per node over 2 s: lb {}, lb2 {}", spread[0], spread[1]);
    assert!(spread.iter().all(|&p| p > 200), "both nodes must carry traffic: {spread:?}");

    // Node 1 dies: its daemon is SIGKILLed and its link goes down, so nothing forwards there.
    let killed_at = load.now();
    let before = load.progress();
    lab.kill_balancer(1).unwrap();
    lab.set_node_link(1, false).unwrap();
    let withdrawn = lab.wait_for_paths(VIP_L3, 1, HOLD + Duration::from_secs(5)).unwrap();
    assert_eq!(lab.router_paths(VIP_L3).unwrap(), vec![Topology::node_addr(2)]);
    // Flows stuck on the dead path come back at their next retransmission (RTO backoff).
    std::thread::sleep(HOLD + Duration::from_secs(2));
    let failed = load.settle(&before, killed_at, Duration::from_secs(20));
    let bad = load.bad_attempts_between(killed_at, load.now());
    let recovered = bad.iter().map(|a| a.at + a.took - killed_at).max().unwrap_or_default();
    let late: Vec<&Attempt> = bad.iter().filter(|a| a.at > killed_at + HOLD + Duration::from_secs(1)).collect();
    println!(
        "node loss: router withdrew lb after {:.2} s; {} of {LONG_LIVED} long-lived connections survived ({:.1}%); \
         new connections: {} failed or retransmitted, the last of them done {:.2} s after the kill (BGP hold time {} s)",
        withdrawn.as_secs_f64(),
        LONG_LIVED - failed.len(),
        survival(failed.len(), LONG_LIVED),
        bad.len(),
        recovered.as_secs_f64(),
        HOLD.as_secs()
    );
    assert!(survival(failed.len(), LONG_LIVED) >= 99.0, "failed: {failed:?}");
    assert!(late.is_empty(), "new connections still failed after the hold time: {late:?}");

    // Node 1 returns: link up, daemon started again (it adopts its pinned data plane).
    let returned_at = load.now();
    let before = load.progress();
    lab.set_node_link(1, true).unwrap();
    lab.restart_balancer_on(1).unwrap();
    let back = lab.wait_for_paths(VIP_L3, 2, Duration::from_secs(15)).unwrap();
    assert!(lab.router_paths(VIP_L3).unwrap().contains(&node1));
    std::thread::sleep(Duration::from_secs(2));
    let alive = LONG_LIVED - failed.len();
    let failed_back = load.settle(&before, returned_at, Duration::from_secs(20));
    let bad_back = load.bad_attempts_between(returned_at, load.now());
    let spread = node_packets(&lab, || std::thread::sleep(Duration::from_secs(1)));
    let (conns, _) = load.stop();
    println!(
        "node return: router spread over both nodes again {:.2} s after link up + restart; {} of {alive} connections survived ({:.1}%); \
         {} new connections failed or retransmitted; packets in per node over 1 s: lb {}, lb2 {}",
        back.as_secs_f64(),
        alive - failed_back.len(),
        survival(failed_back.len(), alive),
        bad_back.len(),
        spread[0],
        spread[1]
    );
    assert!(survival(failed_back.len(), alive) >= 99.0, "failed: {failed_back:?}");
    assert!(bad_back.iter().all(|a| a.ok), "new connections failed after the return: {bad_back:?}");
    assert!(spread.iter().all(|&p| p > 50), "both nodes carry traffic again: {spread:?}");
    assert!(conns.iter().filter(|c| c.error.is_none()).all(|c| c.requests > 10), "every surviving connection kept working");
}

#[test]
fn draining_a_node_under_load_fails_no_connection_and_all_backends_down_withdraws_one_vip() {
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let lab = TestLab::cluster("drain", 3, 2);
    // The IPv6 VIP comes over the nodes' IPv6 BGP sessions, spread by the router like the IPv4 ones.
    let announced6 = lab.wait_for_paths(VIP6, 2, Duration::from_secs(15)).unwrap();
    let spread6 = lab.send_requests(VIP6, 60).unwrap();
    assert_eq!(spread6.values().sum::<usize>(), 60, "every request to [{VIP6}] answered: {spread6:?}");
    let load = Load::start(&lab);
    let spread = node_packets(&lab, || std::thread::sleep(Duration::from_secs(1)));
    assert!(spread.iter().all(|&p| p > 100), "both nodes must carry traffic before the drain: {spread:?}");

    // Drain node 1: it withdraws, keeps forwarding what still arrives, and says when traffic stopped.
    let drained_at = load.now();
    let before = load.progress();
    let out = lab.tula_on(1, &["node", "drain", "--quiet", "1s", "--timeout", "20s"]).unwrap();
    assert!(out.contains("traffic stopped"), "{out}");
    assert_eq!(lab.router_paths(VIP_L3).unwrap(), vec![Topology::node_addr(2)]);
    assert_eq!(lab.router_paths(VIP_L2).unwrap(), vec![Topology::node_addr(2)]);
    assert_eq!(lab.router_paths(VIP6).unwrap(), vec![ipv6_of(Topology::node_addr(2))], "the IPv6 VIP is withdrawn too");
    let idle = node_packets(&lab, || std::thread::sleep(Duration::from_secs(1)));
    let status = lab.tula_on(1, &["node", "status"]).unwrap();
    assert!(status.contains("drained") && status.contains("withdrawn: node drained"), "{status}");
    let resumed_at = load.now();
    lab.tula_on(1, &["node", "resume"]).unwrap();
    let back = lab.wait_for_paths(VIP_L3, 2, Duration::from_secs(10)).unwrap();
    lab.wait_for_paths(VIP6, 2, Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let failed = load.settle(&before, drained_at, Duration::from_secs(20));
    let bad: Vec<Attempt> = load.bad_attempts_between(drained_at, load.now()).into_iter().filter(|a| !a.ok).collect();
    println!(
        "IPv6 VIP [{VIP6}]: announced by both nodes over IPv6 BGP sessions {:.2} s after the lab was up; 60 requests answered by {spread6:?}",
        announced6.as_secs_f64()
    );
    println!(
        "drain (packets in per node over 1 s before it: lb {}, lb2 {}): {}; lb received {} packets in the next second; \
         {} of {LONG_LIVED} connections and {} new connections failed; resumed: both nodes again after {:.2} s (resume issued at {:.1} s)",
        spread[0],
        spread[1],
        out.lines().last().unwrap_or_default(),
        idle[0],
        failed.len(),
        bad.len(),
        back.as_secs_f64(),
        resumed_at.as_secs_f64()
    );
    assert!(idle[0] < 20, "a drained node still receives traffic: {idle:?}");
    assert!(failed.is_empty(), "connections failed across drain and resume: {failed:?}");
    assert!(bad.is_empty(), "new connections failed across drain and resume: {bad:?}");
    load.stop();

    // Every backend of `web` down as node 1 sees it (its probes are dropped at
    // the backends): node 1 withdraws 203.0.113.10; node 2 serves it alone.
    let web_check = "health_check = { type = \"tcp\", interval = \"200ms\", timeout = \"200ms\", rise = 1, fall = 2 }";
    for n in lab.topology.nodes() {
        let path = lab.topology.run_dir().join(format!("checked-{n}.toml"));
        std::fs::write(&path, tula_lab::balancer::node_config_toml(&lab.topology, n, &[1, 2, 3], web_check)).unwrap();
        lab.tula_on(n, &["apply", "-f", &path.to_string_lossy()]).unwrap();
    }
    let block = |on: bool| {
        for i in 1..=lab.topology.backends {
            let ns = tula_net::Netns::open(&lab.topology.ns_backend(i)).unwrap();
            let script = if on {
                format!("table inet probes {{\n chain input {{\n  type filter hook input priority 0;\n  ip saddr {} tcp dport {VIP_PORT} drop\n }}\n}}\n", Topology::node_addr(1))
            } else {
                "delete table inet probes\n".to_string()
            };
            let file = lab.topology.run_dir().join("probes.nft");
            std::fs::write(&file, &script).unwrap();
            let out = ns.command("nft").arg("-f").arg(&file).output().unwrap();
            assert!(out.status.success(), "nft {script}: {}", String::from_utf8_lossy(&out.stderr));
        }
    };
    block(true);
    let withdrew = lab.wait_for_paths(VIP_L3, 1, Duration::from_secs(10)).unwrap();
    assert_eq!(lab.router_paths(VIP_L3).unwrap(), vec![Topology::node_addr(2)]);
    assert_eq!(lab.router_paths(VIP_L2).unwrap().len(), 2, "the other VIP stays announced by both");
    let status = lab.tula_on(1, &["node", "status"]).unwrap();
    assert!(status.contains("withdrawn: VIP web has no healthy backend"), "{status}");
    let spread = lab.send_requests(Ipv4Addr::from(VIP_L3), 100).unwrap();
    assert_eq!(spread.values().sum::<usize>(), 100, "{spread:?}");
    block(false);
    let returned = lab.wait_for_paths(VIP_L3, 2, Duration::from_secs(10)).unwrap();
    println!(
        "all backends of web down on lb: the router had withdrawn it {:.2} s after lb's probes were dropped \
         (health check 200 ms x fall 2); lb2 served 100 of 100 new connections; announced again {:.2} s after the probes passed",
        withdrew.as_secs_f64(),
        returned.as_secs_f64()
    );
}

/// The grace `tula serve --bgp` keeps announcements for after its daemon dies (the default `--bgp-grace`).
const GRACE: Duration = Duration::from_secs(10);

/// How many times the router's paths for `vip` were not `paths` while polling every 50 ms during `f`.
fn flaps_during(lab: &TestLab, vip: Ipv4Addr, paths: usize, f: impl FnOnce()) -> usize {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut flaps = 0;
            while !stop.load(Ordering::SeqCst) {
                if lab.router_paths(vip).unwrap().len() != paths {
                    flaps += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            flaps
        });
        f();
        stop.store(true, Ordering::SeqCst);
        watcher.join().unwrap()
    })
}

#[test]
fn a_dead_daemon_is_withdrawn_after_its_grace_and_a_restart_within_it_does_not_flap() {
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let lab = TestLab::cluster("grace", 3, 2);
    let load = Load::start(&lab);
    let before = load.progress();
    let first_kill = load.now();

    // Killed and restarted within the grace: the holder keeps the routes, the new daemon takes them over.
    let flaps = flaps_during(&lab, VIP_L3, 2, || {
        lab.kill_balancer(2).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        lab.restart_balancer_on(2).unwrap();
        std::thread::sleep(GRACE + Duration::from_secs(1));
    });
    assert_eq!(flaps, 0, "the router lost lb2 while its daemon restarted within the grace");

    // Killed for good (its pinned data plane forwards on): withdrawn once the grace is over, not before.
    let killed = Instant::now();
    lab.kill_balancer(2).unwrap();
    std::thread::sleep(GRACE - Duration::from_secs(2));
    assert_eq!(lab.router_paths(VIP_L3).unwrap().len(), 2, "withdrawn before the grace was over");
    lab.wait_for_paths(VIP_L3, 1, Duration::from_secs(10)).unwrap();
    let withdrawn = killed.elapsed();
    assert_eq!(lab.router_paths(VIP_L3).unwrap(), vec![Topology::node_addr(1)]);
    assert_eq!(lab.router_paths(VIP_L2).unwrap(), vec![Topology::node_addr(1)]);
    std::thread::sleep(Duration::from_secs(1));
    let failed = load.settle(&before, first_kill, Duration::from_secs(20));
    let bad: Vec<Attempt> = load.bad_attempts_between(first_kill, load.now()).into_iter().filter(|a| !a.ok).collect();
    load.stop();
    println!(
        "dead daemon: lb2 restarted within the grace: {flaps} route changes at the router; killed for good: withdrawn \
         {:.2} s later (grace {} s); {} of {LONG_LIVED} long-lived connections survived, {} new connections failed",
        withdrawn.as_secs_f64(),
        GRACE.as_secs(),
        LONG_LIVED - failed.len(),
        bad.len()
    );
    assert!(withdrawn < GRACE + Duration::from_secs(3), "withdrawn {withdrawn:?} after the kill");
    assert!(failed.is_empty(), "connections failed: {failed:?}");
    assert!(bad.is_empty(), "new connections failed: {bad:?}");
}
