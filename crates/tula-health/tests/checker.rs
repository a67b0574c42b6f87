//! The checker against real servers in namespaces, with tula-control
//! programming the real data plane: a backend whose server stops goes down
//! within interval x fall + timeout and leaves the ring, other backends'
//! flows stay put, it comes back within interval x rise + timeout; drain
//! keeps flows and takes no new ones; each all_down policy does what it says.

mod support;

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use support::*;
use tula_control::NewFlows;
use tula_health::{Checker, HealthState, Outcome};

const INTERVAL_MS: u64 = 300;
const TIMEOUT_MS: u64 = 150;
/// Time for what follows a decision: programming the data plane, and this test's polling.
const SLACK: Duration = Duration::from_millis(250);

fn web() -> SocketAddrV4 {
    SocketAddrV4::new("203.0.113.10".parse().unwrap(), 80)
}

fn http_check(port: u16) -> String {
    format!(
        "health_check = {{ type = \"http\", port = {port}, path = \"/health\", expect_body = \"ok\", interval = \"{INTERVAL_MS}ms\", timeout = \"{TIMEOUT_MS}ms\", rise = 2, fall = 3 }}"
    )
}

fn at(n: u8, port: u16) -> SocketAddr {
    SocketAddr::new(backend(n).into(), port)
}

/// Waits until every checked backend has passed a check.
fn all_checked(checker: &Checker, count: usize) {
    let seen = wait_until(Duration::from_secs(5), || {
        let snapshot = checker.snapshot();
        snapshot.len() == count
            && snapshot.iter().all(|b| {
                b.last_result
                    .as_ref()
                    .is_some_and(|r| r.outcome == Outcome::Pass)
            })
    });
    assert!(
        seen.is_some(),
        "not every backend passed a check: {:#?}",
        checker.snapshot()
    );
}

#[test]
fn a_stopped_backend_goes_down_in_time_and_comes_back_in_time() {
    let lab = Lab::new("downup");
    let control = lab.start_control();
    lab.apply(
        &control,
        &format!(
            r#"[[vip]]
            name = "web"
            address = "203.0.113.10"
            port = 80
            {}
            backends = [{{ address = "198.18.0.10" }}, {{ address = "198.18.0.11" }}, {{ address = "198.18.0.12" }}]"#,
            http_check(8080)
        ),
    );
    let _b10 = HttpServer::healthy(&lab.backends, at(10, 8080));
    let mut b11 = HttpServer::healthy(&lab.backends, at(11, 8080));
    let _b12 = HttpServer::healthy(&lab.backends, at(12, 8080));
    let runtime = lab.runtime();
    let checker = Checker::spawn(control.clone(), runtime.handle());
    all_checked(&checker, 3);

    // Flows established before the failure, and where they went.
    let before: Vec<(u16, std::net::Ipv4Addr)> = (40000..40060)
        .map(|port| (port, lab.send(port, web()).expect("forwarded")))
        .collect();
    assert!(
        before.iter().any(|(_, b)| *b == backend(11)),
        "no flow went to .11 to begin with"
    );

    b11.stop();
    let down = wait_until(Duration::from_secs(5), || {
        !healthy(&control, "web", backend(11))
    })
    .expect("the stopped backend was never marked down");
    let bound = Duration::from_millis(INTERVAL_MS * 3 + TIMEOUT_MS);
    println!("down after {down:?} (bound {bound:?} + {SLACK:?})");
    assert!(
        down <= bound + SLACK,
        "marked down after {down:?}, beyond interval x fall + timeout = {bound:?}"
    );

    // No new flow reaches it; the other backends' flows stay where they were; its own re-hash.
    for port in 41000..41100 {
        assert_ne!(
            lab.send(port, web()),
            Some(backend(11)),
            "a new flow went to the down backend"
        );
    }
    for (port, was) in &before {
        let now = lab.send_established(*port, web()).expect("forwarded");
        if *was == backend(11) {
            assert_ne!(
                now,
                backend(11),
                "a flow of the down backend still goes to it"
            );
        } else {
            assert_eq!(
                now, *was,
                "the flow from port {port} moved off a healthy backend"
            );
        }
    }
    let health = checker.backend("web", backend(11).into()).unwrap();
    assert_eq!(health.state, HealthState::Down);
    let change = health.history.last().unwrap();
    assert_eq!(
        (change.from, change.to),
        (HealthState::Up, HealthState::Down)
    );
    assert!(
        change.cause.detail.contains("refused"),
        "cause: {:?}",
        change.cause
    );
    assert_eq!(health.counts.went_down, 1);

    let _b11 = HttpServer::healthy(&lab.backends, at(11, 8080));
    let up = wait_until(Duration::from_secs(5), || {
        healthy(&control, "web", backend(11))
    })
    .expect("the restarted backend never came back");
    let bound = Duration::from_millis(INTERVAL_MS * 2 + TIMEOUT_MS);
    println!("up after {up:?} (bound {bound:?} + {SLACK:?})");
    assert!(
        up <= bound + SLACK,
        "back up after {up:?}, beyond interval x rise + timeout = {bound:?}"
    );
    assert!(
        (42000..42100).any(|port| lab.send(port, web()) == Some(backend(11))),
        "the recovered backend takes no new flows"
    );
    let health = checker.backend("web", backend(11).into()).unwrap();
    assert_eq!(
        (health.state, health.history.len(), health.counts.went_up),
        (HealthState::Up, 2, 1)
    );
    let totals = checker.counts();
    assert_eq!((totals.went_down, totals.went_up), (1, 1));
    assert!(totals.failed >= 3 && totals.passed > 10, "{totals:?}");
}

#[test]
fn drain_keeps_existing_flows_and_takes_no_new_ones() {
    let lab = Lab::new("drain");
    let control = lab.start_control();
    let config = |b11: &str| {
        format!(
            r#"[[vip]]
            name = "web"
            address = "203.0.113.10"
            port = 80
            {}
            backends = [{{ address = "198.18.0.10" }}, {{ address = "198.18.0.11"{b11} }}, {{ address = "198.18.0.12" }}]"#,
            http_check(8080)
        )
    };
    lab.apply(&control, &config(""));
    let _servers: Vec<HttpServer> = [10, 11, 12]
        .map(|n| HttpServer::healthy(&lab.backends, at(n, 8080)))
        .into();
    let runtime = lab.runtime();
    let checker = Checker::spawn(control.clone(), runtime.handle());
    all_checked(&checker, 3);
    let on_11: Vec<u16> = (40000..40100)
        .filter(|&port| lab.send(port, web()) == Some(backend(11)))
        .collect();
    assert!(!on_11.is_empty());

    for drain in [", state = \"drain\"", ", weight = 0"] {
        lab.apply(&control, &config(drain));
        checker.config_changed();
        for port in &on_11 {
            assert_eq!(
                lab.send_established(*port, web()),
                Some(backend(11)),
                "with{drain}: an existing flow left the draining backend"
            );
        }
        for port in 43000..43100 {
            assert_ne!(
                lab.send(port, web()),
                Some(backend(11)),
                "with{drain}: a new flow went to the draining backend"
            );
        }
    }
    // Still checked while draining; if it fails, its flows move too.
    let checked = wait_until(Duration::from_secs(3), || {
        checker
            .backend("web", backend(11).into())
            .is_some_and(|b| b.counts.passed >= 4)
    });
    assert!(checked.is_some(), "a draining backend is no longer checked");
    drop(_servers);
    wait_until(Duration::from_secs(5), || {
        !healthy(&control, "web", backend(11))
    })
    .expect("never marked down");
    for port in &on_11 {
        assert_ne!(
            lab.send_established(*port, web()),
            Some(backend(11)),
            "a flow stayed on a draining backend that is down"
        );
    }
}

#[test]
fn each_all_down_policy_does_what_it_says() {
    let lab = Lab::new("alldown");
    let control = lab.start_control();
    let vip = |name: &str, last: u8, policy: &str, a: u8, b: u8| {
        format!(
            r#"[[vip]]
            name = "{name}"
            address = "203.0.113.{last}"
            port = 80
            all_down = "{policy}"
            {sorry}{check}
            backends = [{{ address = "198.18.0.{a}" }}, {{ address = "198.18.0.{b}" }}]
            "#,
            sorry = if policy == "sorry" {
                "sorry_backend = \"198.18.0.29\"\n"
            } else {
                ""
            },
            check = http_check(8080),
        )
    };
    lab.apply(
        &control,
        &[
            vip("drop", 20, "drop", 20, 21),
            vip("keep", 21, "keep-last", 22, 23),
            vip("sorry", 22, "sorry", 24, 25),
        ]
        .concat(),
    );
    lab.lb
        .run(|| tula_net::add_neighbour("lb0", backend(29), [0x02, 0, 0, 0, 0, 0x29]))
        .unwrap()
        .unwrap();
    let mut servers: Vec<HttpServer> = (20..=25)
        .map(|n| HttpServer::healthy(&lab.backends, at(n, 8080)))
        .collect();
    let runtime = lab.runtime();
    let checker = Checker::spawn(control.clone(), runtime.handle());
    all_checked(&checker, 6);
    let to = |last: u8| SocketAddrV4::new(std::net::Ipv4Addr::new(203, 0, 113, last), 80);
    let new_flows = |name: &str| {
        control
            .status()
            .unwrap()
            .into_iter()
            .find(|v| v.name == name)
            .unwrap()
            .new_flows
    };

    // .22 fails before .23, so .23 is the last one up of "keep".
    servers[2].stop();
    wait_until(Duration::from_secs(5), || {
        !healthy(&control, "keep", backend(22))
    })
    .expect(".22 never went down");
    for server in &mut servers {
        server.stop();
    }
    let all_down = wait_until(Duration::from_secs(5), || {
        [20, 21]
            .iter()
            .all(|&n| !healthy(&control, "drop", backend(n)))
            && !healthy(&control, "keep", backend(23))
            && [24, 25]
                .iter()
                .all(|&n| !healthy(&control, "sorry", backend(n)))
    });
    assert!(
        all_down.is_some(),
        "not every backend went down: {:#?}",
        checker.snapshot()
    );

    assert_eq!(new_flows("drop"), NewFlows::Dropped);
    assert_eq!(new_flows("keep"), NewFlows::KeptLast);
    assert_eq!(new_flows("sorry"), NewFlows::Sorry);
    for port in 44000..44020 {
        assert_eq!(
            lab.send(port, to(20)),
            None,
            "drop: a new flow was forwarded"
        );
        assert_eq!(
            lab.send(port, to(21)),
            Some(backend(23)),
            "keep-last: not sent to the last one up"
        );
        assert_eq!(
            lab.send(port, to(22)),
            Some(backend(29)),
            "sorry: not sent to the sorry backend"
        );
    }

    // One backend of each comes back: new flows go to it again.
    let _back: Vec<HttpServer> = [21, 22, 25]
        .map(|n| HttpServer::healthy(&lab.backends, at(n, 8080)))
        .into();
    let back = wait_until(Duration::from_secs(5), || {
        ["drop", "keep", "sorry"]
            .iter()
            .all(|name| new_flows(name) == NewFlows::Backends)
    });
    assert!(
        back.is_some(),
        "the policies did not give way to the recovered backends"
    );
    for port in 45000..45020 {
        assert_eq!(lab.send(port, to(20)), Some(backend(21)));
        assert_eq!(lab.send(port, to(21)), Some(backend(22)));
        assert_eq!(lab.send(port, to(22)), Some(backend(25)));
    }
}

#[test]
fn check_types_report_what_they_see_and_follow_config_changes() {
    let lab = Lab::new("types");
    let control = lab.start_control();
    let quick = "interval = \"200ms\", timeout = \"100ms\", rise = 1, fall = 1";
    let vips = |status_check: &str| {
        format!(
            r#"
            [[vip]]
            name = "tcp"
            address = "203.0.113.10"
            port = 7000
            health_check = {{ type = "tcp", {quick} }}
            backends = [{{ address = "198.18.0.10" }}, {{ address = "198.18.0.11" }}, {{ address = "198.18.0.99" }}]
            [[vip]]
            name = "status"
            address = "203.0.113.11"
            port = 80
            health_check = {status_check}
            backends = [{{ address = "198.18.0.12" }}]
            [[vip]]
            name = "host"
            address = "203.0.113.12"
            port = 80
            health_check = {{ type = "http", port = 8080, host = "health.example", expect_body = "for health.example", {quick} }}
            backends = [{{ address = "198.18.0.13" }}, {{ address = "198.18.0.14" }}]
            [[vip]]
            name = "tls-off"
            address = "203.0.113.13"
            port = 443
            health_check = {{ type = "https", host = "backend.test", expect_body = "secure ok", {quick} }}
            backends = [{{ address = "198.18.0.15" }}]
            [[vip]]
            name = "tls-on"
            address = "203.0.113.14"
            port = 443
            health_check = {{ type = "https", host = "backend.test", tls_verify = true, {quick} }}
            backends = [{{ address = "198.18.0.15" }}]
            "#
        )
    };
    let status_check =
        format!("{{ type = \"http\", port = 8080, expect_status = \"200-299\", {quick} }}");
    lab.apply(&control, &vips(&status_check));
    let _tcp = lab
        .backends
        .run(|| std::net::TcpListener::bind(at(10, 7000)))
        .unwrap()
        .unwrap();
    let _status = HttpServer::start(
        &lab.backends,
        at(12, 8080),
        std::sync::Arc::new(|_| {
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy".to_string()
        }),
    );
    // .13 answers in chunks and names the Host it was asked for; .14 always names another host.
    let _host = HttpServer::start(
        &lab.backends,
        at(13, 8080),
        std::sync::Arc::new(|head| {
            let body = format!("for {}", host_header(head));
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfor \r\n{:x}\r\n{}\r\n0\r\n\r\n",
                body.len() - 4,
                &body[4..]
            )
        }),
    );
    let _other = HttpServer::start(
        &lab.backends,
        at(14, 8080),
        std::sync::Arc::new(|_| ok("for another.example")),
    );
    // A self-signed certificate: fine unverified, refused when verified.
    let _tls = TlsServer::start(&lab.backends, at(15, 443));
    let runtime = lab.runtime();
    let checker = Checker::spawn(control.clone(), runtime.handle());

    let expected = [
        ("tls-off", 15, HealthState::Up, "status 200"),
        ("tls-on", 15, HealthState::Down, "invalid peer certificate"),
        ("tcp", 10, HealthState::Up, "connected"),
        ("tcp", 11, HealthState::Down, "refused the connection"),
        ("tcp", 99, HealthState::Down, "no answer within 100ms"),
        (
            "status",
            12,
            HealthState::Down,
            "status 503 is not in 200-299",
        ),
        ("host", 13, HealthState::Up, "status 200"),
        (
            "host",
            14,
            HealthState::Down,
            "has no \"for health.example\"",
        ),
    ];
    let settled = wait_until(Duration::from_secs(5), || {
        expected.iter().all(|(vip, n, state, _)| {
            checker
                .backend(vip, backend(*n).into())
                .is_some_and(|b| b.state == *state && b.counts.passed + b.counts.failed >= 2)
        })
    });
    for (vip, n, state, detail) in expected {
        let health = checker.backend(vip, backend(n).into()).unwrap();
        let last = health.last_result.clone().unwrap();
        assert!(
            health.state == state && last.detail.contains(detail),
            "{vip}/{}: expected {state} with {detail:?}, got {:?} with {last:?}",
            backend(n),
            health.state
        );
        wait_until(Duration::from_secs(2), || {
            healthy(&control, vip, backend(n)) == (state == HealthState::Up)
        })
        .unwrap_or_else(|| panic!("Control does not have {vip}/{} {state}", backend(n)));
    }
    assert!(settled.is_some());

    // The "status" VIP's check is turned off: its down backend counts as up again.
    // A backend removed from the config is no longer checked.
    let mut changed = vips(r#"{ type = "none" }"#);
    changed = changed.replace(r#", { address = "198.18.0.99" }"#, "");
    lab.apply(&control, &changed);
    checker.config_changed();
    let followed = wait_until(Duration::from_secs(3), || {
        checker.backend("status", backend(12).into()).is_none()
            && checker.backend("tcp", backend(99).into()).is_none()
            && healthy(&control, "status", backend(12))
    });
    assert!(
        followed.is_some(),
        "the checker did not follow the config: {:#?}",
        checker.snapshot()
    );
    assert_eq!(checker.snapshot().len(), 6);
    let order: Vec<(String, IpAddr)> = checker
        .snapshot()
        .into_iter()
        .map(|b| (b.vip, b.address))
        .collect();
    assert_eq!(
        order[0],
        ("tcp".to_string(), backend(10).into()),
        "snapshot is in config order"
    );
    checker.stop();
    assert!(checker.snapshot().is_empty());
}

#[test]
fn ipv6_backends_are_checked_by_tcp_and_http_and_go_down_when_their_server_dies() {
    let lab = Lab::new("ipv6");
    let control = lab.start_control();
    let quick = "interval = \"200ms\", timeout = \"100ms\", rise = 1, fall = 1";
    lab.apply(
        &control,
        &format!(
            r#"
            [[vip]]
            name = "tcp6"
            address = "2001:db8:ff::10"
            port = 7000
            health_check = {{ type = "tcp", {quick} }}
            backends = [{{ address = "{tcp}" }}]
            [[vip]]
            name = "http6"
            address = "2001:db8:ff::11"
            port = 80
            health_check = {{ type = "http", port = 8080, path = "/health", expect_body = "ok", {quick} }}
            backends = [{{ address = "{http}" }}]
            [[vip]]
            name = "mixed"
            address = "203.0.113.15"
            port = 80
            health_check = {{ type = "http", port = 8080, expect_body = "ok", {quick} }}
            backends = [{{ address = "{mixed}" }}]
            "#,
            tcp = backend6(10),
            http = backend6(11),
            mixed = backend6(12),
        ),
    );
    let tcp = lab
        .backends
        .run(|| std::net::TcpListener::bind((backend6(10), 7000)))
        .unwrap()
        .unwrap();
    // The server answers `ok` and remembers the Host header it was sent.
    let hosts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = hosts.clone();
    let mut http = HttpServer::start(
        &lab.backends,
        SocketAddr::new(backend6(11).into(), 8080),
        std::sync::Arc::new(move |head| {
            seen.lock().unwrap().push(host_header(head));
            ok("ok")
        }),
    );
    let _mixed = HttpServer::healthy(&lab.backends, SocketAddr::new(backend6(12).into(), 8080));
    let runtime = lab.runtime();
    let checker = Checker::spawn(control.clone(), runtime.handle());

    let state = |vip: &str, n: u8| checker.backend(vip, backend6(n).into()).map(|b| b.state);
    // Every backend starts up: wait for passed probes, not just the state.
    let all_up = wait_until(Duration::from_secs(5), || {
        [("tcp6", 10), ("http6", 11), ("mixed", 12)].iter().all(|(vip, n)| {
            checker
                .backend(vip, backend6(*n).into())
                .is_some_and(|b| b.state == HealthState::Up && b.counts.passed >= 2)
                && healthy(&control, *vip, backend6(*n))
        })
    });
    assert!(all_up.is_some(), "IPv6 backends not up: {:#?}", checker.snapshot());
    assert_eq!(checker.backend("tcp6", backend6(10).into()).unwrap().last_result.unwrap().detail, "connected");
    let sent: Vec<String> = hosts.lock().unwrap().clone();
    let expected = format!("[{}]:8080", backend6(11));
    assert!(!sent.is_empty() && sent.iter().all(|h| *h == expected), "Host headers {sent:?}, not {expected}");

    // Both servers die: each backend goes down and leaves its VIP.
    drop(tcp);
    http.stop();
    let down = wait_until(Duration::from_secs(3), || {
        state("tcp6", 10) == Some(HealthState::Down)
            && state("http6", 11) == Some(HealthState::Down)
            && !healthy(&control, "tcp6", backend6(10))
            && !healthy(&control, "http6", backend6(11))
    });
    assert!(down.is_some(), "killed IPv6 servers not down: {:#?}", checker.snapshot());
    let detail = checker.backend("tcp6", backend6(10).into()).unwrap().last_result.unwrap().detail;
    assert!(detail.contains(&format!("[{}]:7000 refused the connection", backend6(10))), "{detail}");
    assert_eq!(state("mixed", 12), Some(HealthState::Up));
    checker.stop();
}
