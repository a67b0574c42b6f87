//! Health checks end to end on the lab network: the real daemon (`tula
//! serve`) checks the backends' real HTTP servers, and the client's traffic
//! shows what each change does. A backend whose server stops is taken out
//! within interval × fall + timeout and comes back within interval × rise
//! plus timeout (both measured from the checker's own timestamps); the
//! `tunnel` check catches a backend that lost the VIP while a plain TCP check
//! to its own address still passes; drain keeps existing connections; each
//! all-down policy does what it says.
//!
//! Each test builds its own lab under a unique name, so they run in parallel.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};
use tula_lab::capture::Capture;
use tula_lab::http::Client;
use tula_lab::topology::{Topology, VIP_L3, VIP_PORT};
use tula_lab::Lab;

mod support;
use support::TestLab;
use tula_net::Netns;

/// The checks' timing in these tests: fast, so each test takes seconds.
const INTERVAL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(300);
const RISE: u32 = 2;
const FALL: u32 = 2;

/// The web VIP's `health_check` line with this test timing.
fn check(kind: &str) -> String {
    format!(
        "health_check = {{ type = \"{kind}\", interval = \"{}ms\", timeout = \"{}ms\", rise = {RISE}, fall = {FALL} }}",
        INTERVAL.as_millis(),
        TIMEOUT.as_millis()
    )
}

/// How long a failing backend may take to be marked down, and a recovered
/// one up (docs/HEALTH.md), plus a little for timers that fire late on a
/// loaded machine. A whole probe more would take `INTERVAL` more.
fn down_bound() -> Duration {
    INTERVAL * FALL + TIMEOUT + SLACK
}
fn up_bound() -> Duration {
    INTERVAL * RISE + TIMEOUT + SLACK
}
const SLACK: Duration = Duration::from_millis(50);

/// A lab that is taken down when the test ends, pass or fail.
impl TestLab {
    /// Applies the lab's config over the `active` backends, with `web` as the
    /// web VIP's check and policy and `extra` TOML appended (through the API,
    /// as `tula apply -f` does).
    fn apply(&self, active: &[u8], web: &str, extra: &str) {
        let text = tula_lab::balancer::config_toml_with(&self.topology, active, web) + extra;
        self.apply_toml(&text, "health-test.toml");
    }

    /// `tula status --json`.
    fn status(&self) -> Value {
        serde_json::from_str(&self.tula(&["status", "--json"]).unwrap()).unwrap()
    }

    /// Polls the status every 50 ms until `done` holds (for `limit` at most); that status.
    fn wait_status(&self, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let status = self.status();
            if done(&status) {
                return status;
            }
            assert!(start.elapsed() < limit, "{what}: not within {limit:?}; the status:\n{status:#}\nthe daemon's log:\n{}", self.log("lb"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every backend of each of `vips` has passed a check.
    fn wait_all_passed(&self, vips: &[&str]) {
        self.wait_status("every backend passed a check", Duration::from_secs(10), |status| {
            vips.iter().all(|name| {
                vip(status, name)["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["health"]["last_result"]["outcome"] == "pass")
            })
        });
    }

    /// Waits until `address` of `vip_name` is `state` ("up" or "down") in the
    /// checker and in the data plane; that backend's status.
    fn wait_backend(&self, vip_name: &str, address: Ipv4Addr, state: &str) -> Value {
        let status = self.wait_status(&format!("{address} of {vip_name} {state}"), Duration::from_secs(10), |status| {
            let b = backend(status, vip_name, address);
            b["health"]["state"] == state && b["healthy"] == (state == "up")
        });
        backend(&status, vip_name, address).clone()
    }

    /// A global data-plane counter (`tula stats --json`).
    fn counter(&self, name: &str) -> u64 {
        let stats: Value = serde_json::from_str(&self.tula(&["stats", "--json"]).unwrap()).unwrap();
        stats["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name}: {stats}"))
    }

    fn client_ns(&self) -> Netns {
        Netns::open(&self.topology.ns_client()).unwrap()
    }
}


fn vip<'a>(status: &'a Value, name: &str) -> &'a Value {
    status.as_array().unwrap().iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no VIP {name} in {status}"))
}

fn backend<'a>(status: &'a Value, vip_name: &str, address: Ipv4Addr) -> &'a Value {
    vip(status, vip_name)["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == address.to_string())
        .unwrap_or_else(|| panic!("no backend {address} of {vip_name} in {status}"))
}

/// When the backend entered its current health state.
fn since(backend: &Value) -> SystemTime {
    humantime::parse_rfc3339(backend["health"]["since"].as_str().unwrap()).unwrap()
}

/// How long after `event` the backend's current state began; fails if before.
fn delay_after(backend: &Value, event: SystemTime) -> Duration {
    since(backend).duration_since(event).unwrap_or_else(|_| panic!("the state changed before the event: {backend}"))
}

/// The newest state change in the backend's health record (`GET /api/vips/{vip}/backends/{address}/health`).
fn last_change(lab: &Lab, vip_name: &str, address: Ipv4Addr) -> Value {
    let path = format!("/api/vips/{vip_name}/backends/{address}/health");
    let lb = Netns::open(&lab.topology.ns_lb()).unwrap();
    let text = lb
        .run(|| Client::connect(([127, 0, 0, 1], 9100).into(), Duration::from_secs(5))?.request(&path, None, false))
        .unwrap()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let record: Value = serde_json::from_str(&text).unwrap();
    record["history"].as_array().unwrap().last().unwrap_or_else(|| panic!("no change recorded: {record}")).clone()
}

fn vip_l3() -> SocketAddr {
    (VIP_L3, VIP_PORT).into()
}

fn name_of(i: u8) -> String {
    format!("be{i}")
}

/// Opens keep-alive connections to the VIP from the client until every one
/// of `wanted` backends holds one (60 tries at most): (backend name, connection).
fn connections_to(lab: &TestLab, wanted: &[u8]) -> Vec<(String, Client)> {
    lab.client_ns()
        .run(|| {
            let mut held: Vec<(String, Client)> = Vec::new();
            for _ in 0..60 {
                if wanted.iter().all(|i| held.iter().any(|(name, _)| *name == name_of(*i))) {
                    break;
                }
                let mut conn = Client::connect(vip_l3(), Duration::from_secs(5)).unwrap();
                let name = conn.request("/", None, true).unwrap().trim().to_string();
                if !held.iter().any(|(n, _)| *n == name) {
                    held.push((name, conn));
                }
            }
            held
        })
        .unwrap()
}

#[test]
fn a_backend_whose_server_stops_goes_down_in_time_and_comes_back_in_time() {
    let lab = TestLab::up("hdown", 3);
    lab.apply(&[1, 2, 3], &check("tcp"), "");
    lab.wait_all_passed(&["web"]);
    let mut held = connections_to(&lab, &[1, 2, 3]);
    assert_eq!(held.len(), 3, "could not reach every backend with a kept-alive connection");

    // Stop be2's server: its checks are refused from the next probe on.
    let victim = Topology::backend_addr(2);
    lab.stop_http(2).unwrap();
    // From when the server is gone (its listener closed with the process).
    let stopped = SystemTime::now();
    let watched = Instant::now();
    let down = lab.wait_backend("web", victim, "down");
    let took = delay_after(&down, stopped);
    eprintln!(
        "be2 marked down {took:?} after its server stopped (bound {:?}); the data plane and status had it {:?} after",
        down_bound(),
        watched.elapsed()
    );
    assert!(took <= down_bound(), "be2 went down {took:?} after its server stopped, more than {:?}", down_bound());
    let change = last_change(&lab, "web", victim);
    assert_eq!((change["from"].as_str(), change["to"].as_str()), (Some("up"), Some("down")), "{change}");
    assert_eq!(change["cause"]["outcome"], "fail", "{change}");

    // No new connection reaches it: every request is answered, by the others.
    let spread = lab.send_requests(VIP_L3, 60).unwrap();
    assert_eq!(spread.keys().cloned().collect::<Vec<_>>(), ["be1", "be3"], "{spread:?}");
    // The other backends' established connections are undisturbed.
    for (name, conn) in held.iter_mut().filter(|(name, _)| name != "be2") {
        assert_eq!(conn.request("/", None, true).unwrap().trim(), name, "a kept-alive connection moved");
    }

    // Start it again: back within interval × rise + timeout, and new flows reach it.
    // From before the start: the server listens a little later.
    let started = SystemTime::now();
    lab.start_http(2).unwrap();
    let up = lab.wait_backend("web", victim, "up");
    let took = delay_after(&up, started);
    eprintln!("be2 marked up {took:?} after its server was started (bound {:?})", up_bound());
    assert!(took <= up_bound(), "be2 came back {took:?} after its server started, more than {:?}", up_bound());
    let spread = lab.send_requests(VIP_L3, 60).unwrap();
    assert!(spread.contains_key("be2"), "no new flow reached be2 after it came back: {spread:?}");
    for (name, conn) in held.iter_mut().filter(|(name, _)| name != "be2") {
        assert_eq!(conn.request("/", None, false).unwrap().trim(), name, "a kept-alive connection moved");
    }
}

#[test]
fn the_tunnel_check_catches_a_backend_without_the_vip_that_a_tcp_check_passes() {
    let lab = TestLab::up("htunnel", 2);
    // The same backends behind a second VIP (port 8080), checked with a plain
    // TCP connect to each backend's own address, port 80.
    let tcp_check = check("tcp").replace(" }", ", port = 80 }");
    let beside = format!(
        "\n[[vip]]\nname = \"web-own\"\naddress = \"{VIP_L3}\"\nport = 8080\nprotocol = \"tcp\"\ndsr_type = \"l3-ipip\"\n{tcp_check}\nbackends = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n",
        Topology::backend_addr(1),
        Topology::backend_addr(2)
    );
    lab.apply(&[1, 2], &check("tunnel"), &beside);
    // Tunnel probes pass: the DSR path to each backend works.
    lab.wait_all_passed(&["web", "web-own"]);

    // be1 loses the VIP from lo. Its server, bound to the VIP, stays up, and
    // so does its own address. (It must not route the decapsulated packets
    // on: a backend is not a router.)
    let be1 = Netns::open(&lab.topology.ns_backend(1)).unwrap();
    be1.run(|| tula_net::sysctl::write("net.ipv4.ip_forward", "0")).unwrap().unwrap();
    assert!(be1.run(|| tula_net::del_address("lo", VIP_L3.into(), 32)).unwrap().unwrap());
    let broken = SystemTime::now();
    let victim = Topology::backend_addr(1);
    let down = lab.wait_backend("web", victim, "down");
    let took = delay_after(&down, broken);
    eprintln!("tunnel check: be1 without the VIP marked down {took:?} after (bound {:?})", down_bound());
    assert!(took <= down_bound(), "{took:?}");
    assert_eq!(down["health"]["check"], "tunnel");
    let change = last_change(&lab, "web", victim);
    assert_eq!(change["cause"]["outcome"], "fail", "{change}");
    assert!(change["cause"]["detail"].as_str().unwrap().contains("no answer within 300ms"), "{change}");

    // Meanwhile the plain TCP check of the same backend keeps passing.
    let status = lab.wait_status("a tcp check of be1 after the break", Duration::from_secs(5), |status| {
        let checked = &backend(status, "web-own", victim)["health"]["last_result"];
        checked["time"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok()).is_some_and(|t| t > broken + INTERVAL)
    });
    let own = backend(&status, "web-own", victim);
    assert_eq!(own["health"]["state"], "up", "{own}");
    assert_eq!(own["health"]["last_result"]["outcome"], "pass", "{own}");
    assert_eq!(own["health"]["counts"]["went_down"], 0, "{own}");

    // Clients are no longer sent into the black hole.
    let spread = lab.send_requests(VIP_L3, 30).unwrap();
    assert_eq!(spread, BTreeMap::from([("be2".to_string(), 30)]));

    // The VIP back on lo: the tunnel check brings be1 back.
    let repaired = SystemTime::now();
    assert!(be1.run(|| tula_net::add_address("lo", VIP_L3.into(), 32)).unwrap().unwrap());
    let up = lab.wait_backend("web", victim, "up");
    assert!(delay_after(&up, repaired) <= up_bound());
    let spread = lab.send_requests(VIP_L3, 60).unwrap();
    assert!(spread.contains_key("be1"), "{spread:?}");
}

#[test]
fn a_drained_backend_keeps_its_connections_and_takes_no_new_ones() {
    let lab = TestLab::up("hdrain", 3);
    lab.apply(&[1, 2, 3], &check("tcp"), "");
    lab.wait_all_passed(&["web"]);
    let mut conn = lab.client_ns().run(|| Client::connect(vip_l3(), Duration::from_secs(5))).unwrap().unwrap();
    let name = conn.request("/", None, true).unwrap().trim().to_string();
    let i: u8 = name.trim_start_matches("be").parse().unwrap();
    let address = Topology::backend_addr(i);

    let answer = lab.tula(&["backend", "drain", "web", &address.to_string()]).unwrap();
    assert!(answer.contains("draining"), "{answer}");
    let drained = SystemTime::now();

    // The existing connection keeps working, on the same backend.
    for _ in 0..5 {
        assert_eq!(conn.request("/", None, true).unwrap().trim(), name);
    }
    // New connections go elsewhere.
    let spread = lab.send_requests(VIP_L3, 60).unwrap();
    assert!(!spread.contains_key(&name), "a new connection reached the drained {name}: {spread:?}");
    assert_eq!(spread.values().sum::<usize>(), 60);
    // A draining backend is still checked, and still up; its flow is
    // counted by the next sample of the table (every 5 s by default).
    let status = lab.wait_status("a check of the drained backend, and a sample of its flow", Duration::from_secs(8), |status| {
        let b = backend(status, "web", address);
        let last = &b["health"]["last_result"];
        last["time"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok()).is_some_and(|t| t > drained)
            && b["active_flows"].as_u64().unwrap() >= 1
    });
    let b = backend(&status, "web", address);
    assert_eq!((b["state"].as_str(), b["health"]["state"].as_str()), (Some("drain"), Some("up")), "{b}");
    assert!(b["active_flows"].as_u64().unwrap() >= 1, "the kept connection's flow: {b}");
    // And it finishes normally.
    assert_eq!(conn.request("/", None, false).unwrap().trim(), name);
}

#[test]
fn a_drain_is_over_once_its_backends_flows_have_gone_quiet() {
    // A 2 s active-flow window sampled every 250 ms: the drain's end shows within seconds.
    const WINDOW: Duration = Duration::from_secs(2);
    let lab = TestLab::with_serve_args("hquiet", 2, 1, &["--active-window", "2s", "--flow-sample-interval", "250ms"]);
    lab.apply(&[1, 2], &check("tcp"), "");
    lab.wait_all_passed(&["web"]);
    let mut conn = lab.client_ns().run(|| Client::connect(vip_l3(), Duration::from_secs(5))).unwrap().unwrap();
    let name = conn.request("/", None, true).unwrap().trim().to_string();
    let address = Topology::backend_addr(name.trim_start_matches("be").parse().unwrap());
    lab.tula(&["backend", "drain", "web", &address.to_string()]).unwrap();

    // While the kept connection sends, its flow is active and the drain goes on.
    let start = Instant::now();
    let status = loop {
        assert_eq!(conn.request("/", None, true).unwrap().trim(), name);
        let status = lab.status();
        if backend(&status, "web", address)["active_flows"] == 1 {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the kept connection's flow is not counted: {status:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(vip(&status, "web")["active_window_s"], 2, "{status:#}");
    let line_of = |text: &str, a: Ipv4Addr| text.lines().find(|l| l.contains(&format!(" {a} "))).unwrap_or_default().to_string();
    let line = |text: &str| line_of(text, address);
    let text = lab.tula(&["status"]).unwrap();
    assert!(line(&text).ends_with("draining: 1 active flow"), "{text}");

    // The client closes: its last packets, then none.
    assert_eq!(conn.request("/", None, false).unwrap().trim(), name);
    drop(conn);
    let quiet = SystemTime::now();
    let status = lab.wait_status("no active flow on the drained backend", WINDOW * 3, |status| {
        backend(status, "web", address)["active_flows"] == 0
    });
    let took = quiet.elapsed().unwrap();
    eprintln!("drained backend without active flows {took:?} after its last flow closed (window {WINDOW:?})");
    // Not before the window: a closed flow stays active for it.
    assert!(took >= WINDOW - Duration::from_millis(500), "{took:?}");
    let b = backend(&status, "web", address);
    // The table still remembers the flow: that figure is the other one.
    assert_eq!(b["table_entries"], 1, "{b}");
    let last = humantime::parse_rfc3339(b["last_flow_seen"].as_str().unwrap()).unwrap();
    assert!(
        last + Duration::from_secs(1) >= quiet && last <= quiet + Duration::from_secs(1),
        "last flow seen {b} vs the close at {}", humantime::format_rfc3339_millis(quiet)
    );
    let text = lab.tula(&["status"]).unwrap();
    let since = b["last_flow_seen"].as_str().unwrap();
    assert!(line(&text).contains(&format!("drained: no flows since {since}")), "{text}");
    // The other backend took no flow at all: nothing to say there.
    let other = Topology::backend_addr(if name == "be1" { 2 } else { 1 });
    assert_eq!(backend(&status, "web", other)["active_flows"], 0);
    assert!(!line_of(&text, other).contains("drain"), "{text}");
}

/// The web VIP over be1 and be2 with `all_down` (and more keys), both checked;
/// stops both servers and waits until the VIP's new flows go `new_flows`.
fn all_down(lab: &TestLab, policy_keys: &str, new_flows: &str) {
    lab.apply(&[1, 2], &format!("{}\n{policy_keys}", check("tcp")), "");
    lab.wait_all_passed(&["web"]);
    lab.stop_http(1).unwrap();
    lab.stop_http(2).unwrap();
    for i in [1, 2] {
        lab.wait_backend("web", Topology::backend_addr(i), "down");
    }
    lab.wait_status(&format!("new flows {new_flows}"), Duration::from_secs(5), |status| {
        vip(status, "web")["new_flows"] == new_flows
    });
}

/// One connection attempt to the VIP from the client, with a 1 s timeout.
fn try_connect(lab: &TestLab) -> std::io::Result<String> {
    lab.client_ns().run(|| tula_lab::http::get(vip_l3(), Duration::from_secs(1))).unwrap()
}

#[test]
fn all_down_drop_drops_new_flows_until_a_backend_is_back() {
    let lab = TestLab::up("hdrop", 2);
    all_down(&lab, "all_down = \"drop\"", "dropped");
    let dropped = lab.counter("no_backend");
    // The SYN is dropped at the balancer: no answer at all, not a refusal.
    let error = try_connect(&lab).expect_err("a connection went through with every backend down");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
    assert!(lab.counter("no_backend") > dropped, "the balancer did not count the dropped SYN");

    lab.start_http(1).unwrap();
    lab.wait_backend("web", Topology::backend_addr(1), "up");
    lab.wait_status("new flows to the backends", Duration::from_secs(5), |s| vip(s, "web")["new_flows"] == "backends");
    assert_eq!(lab.send_requests(VIP_L3, 20).unwrap(), BTreeMap::from([("be1".to_string(), 20)]));
}

#[test]
fn all_down_keep_last_keeps_sending_to_the_last_backends() {
    let lab = TestLab::up("hkeep", 2);
    all_down(&lab, "all_down = \"keep-last\"", "kept-last");
    // The ring keeps the backends that were up last. Their servers are
    // stopped, so each connection is refused by a backend's kernel: the SYN
    // got there. The IPIP frames the balancer sent show where.
    let router = Netns::open(&lab.topology.ns_router()).unwrap();
    let mut sent = router.run(|| Capture::open(Topology::ROUTER_LB_LINK)).unwrap().unwrap();
    sent.drain();
    for _ in 0..10 {
        let error = try_connect(&lab).expect_err("a stopped server answered");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused, "{error}");
    }
    std::thread::sleep(Duration::from_millis(100));
    let frames = sent.drain();
    let kept: Vec<Ipv4Addr> = frames.ipip_pairs.keys().map(|(_, dst)| *dst).collect();
    assert!(!kept.is_empty(), "no SYN was tunnelled to a kept backend: {frames:?}");
    assert!(kept.iter().all(|a| [1, 2].map(Topology::backend_addr).contains(a)), "{kept:?}");
    let syns: u64 = frames.ipip_pairs.values().sum();
    assert!(syns >= 10, "{frames:?}");

    lab.start_http(2).unwrap();
    lab.wait_backend("web", Topology::backend_addr(2), "up");
    lab.wait_status("new flows to the backends", Duration::from_secs(5), |s| vip(s, "web")["new_flows"] == "backends");
    assert_eq!(lab.send_requests(VIP_L3, 20).unwrap(), BTreeMap::from([("be2".to_string(), 20)]));
}

#[test]
fn all_down_sorry_sends_new_flows_to_the_sorry_backend() {
    // be3 is not one of the VIP's backends: it is the sorry server, with the
    // VIP set up like any backend and its own HTTP server answering "be3".
    let lab = TestLab::up("hsorry", 3);
    let sorry = format!("all_down = \"sorry\"\nsorry_backend = \"{}\"", Topology::backend_addr(3));
    all_down(&lab, &sorry, "sorry");
    assert_eq!(lab.send_requests(VIP_L3, 30).unwrap(), BTreeMap::from([("be3".to_string(), 30)]));

    lab.start_http(1).unwrap();
    lab.wait_backend("web", Topology::backend_addr(1), "up");
    lab.wait_status("new flows to the backends", Duration::from_secs(5), |s| vip(s, "web")["new_flows"] == "backends");
    assert_eq!(lab.send_requests(VIP_L3, 30).unwrap(), BTreeMap::from([("be1".to_string(), 30)]));
}
