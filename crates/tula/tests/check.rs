//! `tula check -f FILE`: the built binary checks files with no daemon, exit
//! status 0/1/2 as nginx -t does, and (in namespaces of the test's own) reports
//! each host FAIL it can: a veth whose peer, in another namespace, runs no
//! XDP, pin_dir off bpffs, no route to a backend, an MTU too small for the tunnel.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use tula_net::Netns;

mod support;

const TULA: &str = env!("CARGO_BIN_EXE_tula");

fn write(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tula-check-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn tula(ns: Option<&Netns>, args: &[&str]) -> Output {
    let mut command = match ns {
        Some(ns) => ns.command(TULA),
        None => std::process::Command::new(TULA),
    };
    command.args(args).output().unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

const GOOD: &str = r#"
interfaces = ["eth0"]
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{ address = "198.18.3.2" }]
"#;

#[test]
fn every_problem_in_the_file_is_reported_with_its_path_and_exit_status_1() {
    let path = write(
        "bad.toml",
        r#"
interfaces = ["eth0"]
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
scheduler = "fastest"
backends = [{ address = "198.18.3.2", weight = 1001 }]
"#,
    );
    let file = path.to_str().unwrap();
    let output = tula(None, &["check", "--no-host", "-f", file]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("problem"), "{text}");
    assert!(text.contains("check: failed"), "{text}");

    // A decoding error (unknown scheduler) is reported with its path too.
    let report = json(&tula(None, &["check", "--no-host", "--json", "-f", file]));
    assert_eq!(report["ok"], false);
    let paths: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(paths.iter().any(|p| p.contains("scheduler")), "{report}");

    let fixed = write(
        "weight.toml",
        &GOOD.replace("198.18.3.2\" }", "198.18.3.2\", weight = 1001 }"),
    );
    let report = json(&tula(
        None,
        &[
            "check",
            "--no-host",
            "--json",
            "-f",
            fixed.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        report["problems"][0]["path"], "vips[web].backends[0].weight",
        "{report}"
    );
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(fixed);
}

#[test]
fn a_valid_file_exits_0_and_an_unreadable_one_exits_2() {
    let path = write("good.toml", GOOD);
    let output = tula(None, &["check", "--no-host", "-f", path.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).ends_with("check: ok\n"));

    let missing = tula(None, &["check", "-f", "/nonexistent/tula.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("/nonexistent/tula.toml"), "{stderr}");
    let _ = std::fs::remove_file(path);
}

/// The verdict of `check` about `subject` in a `--json` report.
fn verdict<'a>(report: &'a Value, check: &str, subject: &str) -> &'a str {
    report["host"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check && f["subject"] == subject)
        .and_then(|f| f["verdict"].as_str())
        .unwrap_or_else(|| panic!("no {check} finding about {subject}: {report:#}"))
}

#[test]
fn host_checks_fail_on_a_veth_peer_without_xdp_bpffs_routes_and_mtu() {
    let pid = std::process::id();
    let lb = Netns::create(&format!("tchk-lb-{pid}")).unwrap();
    let peer = Netns::create(&format!("tchk-peer-{pid}")).unwrap();
    lb.run(|| {
        tula_net::add_veth("lb0", "nh0", Some(&peer)).unwrap();
        tula_net::set_up("lb0").unwrap();
        tula_net::add_address("lb0", Ipv4Addr::new(198, 18, 0, 1).into(), 24).unwrap();
    })
    .unwrap();
    peer.run(|| tula_net::set_up("nh0").unwrap()).unwrap();
    let pins = std::env::temp_dir().join(format!("tula-check-pins-{pid}"));
    let path = write(
        "host.toml",
        &format!(
            r#"
interfaces = ["lb0", "eth9"]
pin_dir = "{}"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{{ address = "198.18.0.2" }}, {{ address = "198.18.200.3" }}]
"#,
            pins.display()
        ),
    );
    let file = path.to_str().unwrap();
    let output = tula(Some(&lb), &["check", "--json", "-f", file]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(report["problems"][0]["path"], "interfaces[1]", "{report:#}");
    assert_eq!(verdict(&report, "veth-peer", "lb0"), "fail");
    assert_eq!(verdict(&report, "xdp-mode", "lb0"), "pass");
    assert_eq!(verdict(&report, "bpffs", pins.to_str().unwrap()), "fail");
    assert_eq!(verdict(&report, "route", "198.18.0.2"), "pass");
    assert_eq!(verdict(&report, "route", "198.18.200.3"), "fail");
    assert_eq!(verdict(&report, "mtu", "lb0"), "pass");
    let text = String::from_utf8(tula(Some(&lb), &["check", "-f", file]).stdout).unwrap();
    assert!(
        text.contains("FAIL  veth-peer lb0: lb0 is a veth whose peer nh0"),
        "{text}"
    );
    assert!(
        text.contains("fix: attach any XDP program that returns XDP_PASS to nh0"),
        "{text}"
    );

    // With an XDP program on the peer the black hole is gone; a small MTU fails instead.
    support::attach_xdp_pass(&peer, "nh0");
    lb.run(|| tula_net::set_mtu("lb0", 1200).unwrap()).unwrap();
    let report = json(&tula(Some(&lb), &["check", "--json", "-f", file]));
    assert_eq!(verdict(&report, "veth-peer", "lb0"), "pass");
    assert_eq!(verdict(&report, "mtu", "lb0"), "fail");
    let _ = std::fs::remove_file(path);
}

#[test]
fn ipv6_backends_need_the_kernels_global_ipv6_forwarding() {
    let pid = std::process::id();
    let lb = Netns::create(&format!("tchk6-{pid}")).unwrap();
    lb.run(|| {
        tula_net::add_veth("lb0", "nh0", None).unwrap();
        tula_net::set_up("lb0").unwrap();
        tula_net::set_up("nh0").unwrap();
        tula_net::add_address("lb0", "2001:db8:0:1::1".parse().unwrap(), 64).unwrap();
        // Per interface, as tula serve sets it: not enough for IPv6.
        tula_net::sysctl::write("net.ipv6.conf.lb0.forwarding", "1").unwrap();
    })
    .unwrap();
    let path = write(
        "host6.toml",
        r#"
interfaces = ["lb0"]
[[vip]]
name = "web6"
address = "2001:db8:113::10"
port = 80
backends = [{ address = "2001:db8:0:1::2" }]
"#,
    );
    let file = path.to_str().unwrap();
    let report = json(&tula(Some(&lb), &["check", "--json", "-f", file]));
    assert_eq!(verdict(&report, "sysctl", "ipv6"), "fail", "{report:#}");
    let text = String::from_utf8(tula(Some(&lb), &["check", "-f", file]).stdout).unwrap();
    assert!(text.contains("FAIL  sysctl ipv6: net.ipv6.conf.all.forwarding = 0"), "{text}");
    assert!(text.contains("fix: sysctl -w net.ipv6.conf.all.forwarding=1"), "{text}");
    lb.run(|| tula_net::sysctl::write("net.ipv6.conf.all.forwarding", "1").unwrap()).unwrap();
    let report = json(&tula(Some(&lb), &["check", "--json", "-f", file]));
    assert_eq!(verdict(&report, "sysctl", "ipv6"), "pass", "{report:#}");
    let _ = std::fs::remove_file(path);
}
