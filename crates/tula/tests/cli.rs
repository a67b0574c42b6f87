//! The operator CLI against a real `tula serve`: the built binary runs the
//! daemon in a private network namespace (its data plane on a veth there),
//! and the commands talk to it over the API, text and --json, errors included.
//! Then SIGTERM leaves forwarding pinned and `tula dataplane unload` removes it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tula_net::Netns;

mod support;

const TULA: &str = env!("CARGO_BIN_EXE_tula");

const WEB: &str = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{ address = "198.18.100.2" }, { address = "198.18.100.3" }]
"#;

#[test]
fn operator_commands_against_a_running_daemon() {
    let mut daemon = Daemon::start("ops");

    let list = daemon.ok(&["vip", "list"]);
    let web_line = list
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("no web line:\n{list}"));
    assert_eq!(
        web_line.split_whitespace().collect::<Vec<_>>(),
        ["web", "203.0.113.10:80", "TCP", "l3-ipip", "maglev", "2"]
    );

    let vips: Value =
        serde_json::from_str(&daemon.ok(&["vip", "list", "--json"])).expect("--json prints JSON");
    assert_eq!(vips[0]["name"], "web");
    assert_eq!(vips[0]["backends"][1]["address"], "198.18.100.3");

    let shown = daemon.ok(&["vip", "show", "web"]);
    let decoded = tula_config::Config::from_toml_str(&shown)
        .unwrap_or_else(|e| panic!("vip show is not config TOML ({e}):\n{shown}"));
    assert_eq!(decoded.vips[0].name, "web");

    assert_eq!(
        daemon
            .ok(&["backend", "add", "web", "198.18.100.4", "--weight", "3"])
            .trim(),
        "backend 198.18.100.4 of VIP \"web\" added (revision 2)"
    );
    let status = daemon.ok(&["status"]);
    let backend_line = status
        .lines()
        .find(|l| l.contains("198.18.100.4"))
        .unwrap_or_else(|| panic!("{status}"));
    // Health is "up" and for how long (e.g. "up 1s"), between state and weight.
    let cells: Vec<&str> = backend_line.split_whitespace().collect();
    assert_eq!(
        cells[..4],
        ["->", "198.18.100.4", "active", "up"],
        "{backend_line}"
    );
    // Weight, active flows, table entries, packets, bytes.
    assert_eq!(
        cells[cells.len() - 5..],
        ["3", "0", "0", "0", "0"],
        "{backend_line}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("TCP ") && l.contains("203.0.113.10:80")),
        "{status}"
    );

    assert_eq!(
        daemon
            .ok(&["backend", "drain", "web", "198.18.100.4"])
            .trim(),
        "backend 198.18.100.4 of VIP \"web\" draining (revision 3)"
    );
    let drained: Value = serde_json::from_str(&daemon.ok(&[
        "backend",
        "set",
        "web",
        "198.18.100.4",
        "--weight",
        "5",
        "--json",
    ]))
    .unwrap();
    assert_eq!(drained["backend"]["weight"], 5);
    assert_eq!(drained["backend"]["state"], "drain");

    // Errors name the object, print the daemon's field errors one per line, and exit non-zero.
    let failed = daemon.run(&["backend", "rm", "web", "198.18.100.9"]);
    assert!(!failed.status.success());
    assert_eq!(
        stderr(&failed).trim(),
        "error: VIP \"web\" has no backend 198.18.100.9"
    );

    let bad = daemon.write(
        "bad.toml",
        &daemon.config_text(&WEB.replace(
            r#"{ address = "198.18.100.2" }"#,
            r#"{ address = "198.18.100.2", port = 8080 }"#,
        )),
    );
    let failed = daemon.run(&["apply", "-f", path_str(&bad)]);
    assert!(!failed.status.success());
    let errors = stderr(&failed);
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(
        lines[0],
        format!("error: applying {}: the config is invalid", bad.display())
    );
    assert!(lines.contains(&"  vips[web].backends[0].port: 8080 differs from the VIP port 80; DSR cannot translate ports"), "{lines:?}");

    // diff, then apply, a file: 198.18.100.3 re-weighted, 198.18.100.4 gone.
    let file = daemon.write(
        "web.toml",
        &daemon.config_text(&WEB.replace(
            r#"{ address = "198.18.100.3" }"#,
            r#"{ address = "198.18.100.3", weight = 4 }"#,
        )),
    );
    let diff = daemon.ok(&["diff", "-f", path_str(&file)]);
    assert!(
        diff.lines()
            .any(|l| l == "~ vips[web].backends[198.18.100.3].weight: 1 -> 4"),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with("- vips[web].backends[198.18.100.4]")),
        "{diff}"
    );
    let applied = daemon.ok(&["apply", "-f", path_str(&file)]);
    assert!(applied.starts_with("applied revision 5 ("), "{applied}");
    assert!(
        applied.contains("~ vips[web].backends[198.18.100.3].weight: 1 -> 4"),
        "{applied}"
    );

    let history = daemon.ok(&["config", "history"]);
    let last = history.lines().last().unwrap();
    assert!(last.starts_with("5* "), "{history}");
    assert!(
        last.ends_with(&format!("api: apply -f {}", file.display())),
        "{history}"
    );
    let rolled_back: Value =
        serde_json::from_str(&daemon.ok(&["config", "rollback", "1", "--json"])).unwrap();
    assert_eq!(rolled_back["number"], 6);
    assert_eq!(rolled_back["source"], "rollback to 1");
    let shown = daemon.ok(&["config", "show", "1"]);
    assert!(shown.starts_with("# revision 1, "), "{shown}");

    // Optimistic concurrency: a change based on revision 5 while 6 runs changes nothing
    // and says what changed since.
    let stale = daemon.run(&[
        "backend",
        "drain",
        "web",
        "198.18.100.3",
        "--if-revision",
        "5",
    ]);
    assert!(!stale.status.success());
    let refused = stderr(&stale);
    assert!(
        refused.contains("the running config is revision 6, not 5"),
        "{refused}"
    );
    assert!(refused.contains("revision 6 (rollback to 1):"), "{refused}");
    assert!(daemon
        .ok(&["config", "history"])
        .lines()
        .last()
        .unwrap()
        .starts_with("6* "));
    let drained = daemon.ok(&[
        "backend",
        "drain",
        "web",
        "198.18.100.3",
        "--if-revision",
        "6",
    ]);
    assert!(drained.contains("(revision 7)"), "{drained}");
    // A file shown at revision 6 is based on it: applying it after 7 needs --force.
    let running = daemon.ok(&["config", "show"]);
    assert!(running.starts_with("# running revision 7\n"), "{running}");
    let based = daemon.write(
        "based.toml",
        &running.replace("# running revision 7", "# running revision 6"),
    );
    let stale = daemon.run(&["apply", "-f", path_str(&based)]);
    assert!(!stale.status.success());
    assert!(
        stderr(&stale).contains("not 6 as the change assumed"),
        "{}",
        stderr(&stale)
    );
    let forced = daemon.ok(&["apply", "-f", path_str(&based), "--force"]);
    assert!(
        forced.starts_with("applied revision 7 "),
        "no new revision: {forced}"
    );

    let watch = daemon.ok(&["stats", "--watch", "0.2", "--count", "2", "--json"]);
    let reports: Vec<Value> = watch
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(reports.len(), 2, "{watch}");
    assert_eq!(reports[0]["vips"][0]["name"], "web");
    let totals = daemon.ok(&["stats"]);
    assert!(
        totals.lines().any(|l| l.starts_with("lru_miss ")),
        "{totals}"
    );

    let unreachable = daemon.run(&["status", "--api", "http://127.0.0.1:1"]);
    assert!(!unreachable.status.success());
    assert!(
        stderr(&unreachable)
            .starts_with("error: cannot reach the tula daemon at http://127.0.0.1:1"),
        "{}",
        stderr(&unreachable)
    );

    // A stop leaves forwarding running; unload removes it and says so.
    let log = daemon.stop();
    assert!(
        log.contains("\"revision\":2") && log.contains("\"message\":\"applied\""),
        "applied changes are logged:\n{log}"
    );
    assert!(log.contains("stopped serving; forwarding goes on"), "{log}");
    assert!(
        daemon.pin_dir.join("balancer").exists(),
        "the data plane stays pinned after a stop"
    );

    // Off loopback the API needs a token: a start with --listen there and no api.token refuses.
    let refused = daemon
        .ns
        .command("timeout")
        .args([
            "20",
            TULA,
            "serve",
            "--listen",
            "198.18.0.1:9100",
            "--config",
        ])
        .arg(daemon.dir.join("tula.toml"))
        .arg("--state-dir")
        .arg(daemon.dir.join("state"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("error: the API would listen on 198.18.0.1:9100, which is not a loopback address, but the config sets no api.token"),
        "{}",
        stderr(&refused)
    );
    // The pinned data plane's map layout (ABI) is this build's: adopted as it is.
    let pins = ["--pin-dir", path_str(&daemon.pin_dir)];
    let status = daemon.ok(&[&["dataplane", "status"][..], &pins].concat());
    let pinned_line = status.lines().find(|l| l.starts_with("pinned ")).unwrap_or_default();
    let layout = tula_dataplane::abi::LAYOUT_VERSION;
    assert!(
        pinned_line.contains(&format!("layout version {layout}, ring_size 4093, attached to lb0")),
        "{status}"
    );
    assert!(status.contains(&format!("this build  tula {}, layout version {layout}", env!("CARGO_PKG_VERSION"))), "{status}");
    assert!(status.contains("the daemon adopts them as they are"), "{status}");
    let json: Value =
        serde_json::from_str(&daemon.ok(&[&["dataplane", "status", "--json"][..], &pins].concat()))
            .unwrap();
    assert_eq!(json["pinned"]["layout_version"], layout);
    assert_eq!(json["pinned"]["interfaces"][0], "lb0");
    assert_eq!(json["build"]["layout_version"], layout);
    assert_eq!(json["matches"], true);
    let unloaded = daemon.ok(&[
        "dataplane",
        "unload",
        "--pin-dir",
        path_str(&daemon.pin_dir),
    ]);
    assert_eq!(
        unloaded.trim(),
        format!(
            "unloaded the balancer pinned in {}: detached it from lb0, removed its program and maps; nothing forwards any more",
            daemon.pin_dir.display()
        )
    );
    assert!(!daemon.pin_dir.exists());
    let status = daemon.ok(&[&["dataplane", "status"][..], &pins].concat());
    assert!(status.contains("pinned      nothing"), "{status}");
}

/// The verdict `tula doctor --json` gives `check` about `subject`.
fn doctor_verdict(report: &Value, check: &str, subject: &str) -> String {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check && f["subject"] == subject)
        .and_then(|f| f["verdict"].as_str())
        .unwrap_or_else(|| panic!("no {check} finding about {subject}: {report:#}"))
        .to_string()
}

#[test]
fn doctor_reports_each_fail_with_its_fix() {
    let daemon = Daemon::start("doc");
    // nh0, lb0's peer, runs no XDP: the daemon warned at attach.
    let log = daemon.read_log();
    assert!(log.contains("lb0 is a veth whose peer nh0") && log.contains("runs no XDP program"), "{log}");

    let status = daemon.ok(&["status"]);
    assert!(
        status.starts_with("WARNING lb0: lb0 is a veth whose peer nh0"),
        "{status}"
    );

    let doctor = |args: &[&str]| {
        let mut all = vec!["doctor", "--json"];
        all.extend_from_slice(args);
        let output = daemon.run(&all);
        let report: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("doctor --json ({e}): {}", stderr(&output)));
        (output.status.code(), report)
    };
    let (code, report) = doctor(&["--sample", "0"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(doctor_verdict(&report, "veth-peer", "lb0"), "fail");
    assert_eq!(doctor_verdict(&report, "xdp-mode", "lb0"), "pass");
    assert_eq!(doctor_verdict(&report, "sysctl", "lb0"), "pass");
    assert_eq!(doctor_verdict(&report, "pins", path_str(&daemon.pin_dir)), "pass");
    assert_eq!(doctor_verdict(&report, "neighbour", "198.18.100.2"), "pass");
    assert_eq!(doctor_verdict(&report, "health", "backends"), "pass");
    let text = String::from_utf8(daemon.run(&["doctor", "--sample", "0"]).stdout).unwrap();
    assert!(text.contains("FAIL  veth-peer lb0:"), "{text}");
    assert!(text.contains("fix: attach any XDP program that returns XDP_PASS to nh0"), "{text}");

    // XDP on the peer clears the veth FAIL; accept_local off and a pin dir
    // others may write are FAILs of their own; no traffic skips the bypass check.
    support::attach_xdp_pass(&daemon.ns, "nh0");
    let status = daemon.ok(&["status"]);
    assert!(!status.contains("WARNING"), "{status}");
    daemon
        .ns
        .run(|| tula_net::sysctl::write("net.ipv4.conf.lb0.accept_local", "0").unwrap())
        .unwrap();
    let mode = |m| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&daemon.pin_dir, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o777);
    let (code, report) = doctor(&["--sample", "0.2"]);
    mode(0o700);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(doctor_verdict(&report, "veth-peer", "lb0"), "pass");
    let sysctls: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "sysctl" && f["verdict"] == "fail")
        .collect();
    assert_eq!(sysctls.len(), 1, "{report:#}");
    assert!(sysctls[0]["detail"].as_str().unwrap().contains("accept_local"));
    assert_eq!(doctor_verdict(&report, "pins", path_str(&daemon.pin_dir)), "fail");
    assert_eq!(doctor_verdict(&report, "replies-bypass", "0s sample"), "skip");
}

#[test]
fn a_second_daemon_is_refused_before_it_touches_anything() {
    let daemon = Daemon::start("owner");
    daemon.ok(&[
        "vip",
        "add",
        "api",
        "--address",
        "203.0.113.11",
        "--port",
        "443",
        "--backend",
        "198.18.100.7",
    ]);
    let before = daemon.ok(&["status", "--json"]);
    let history = daemon.ok(&["config", "history", "--json"]);
    let first_pid = daemon.server.as_ref().unwrap().id();

    // Same state dir and pin dir, another port and socket: refused, naming the owner.
    let second = daemon.serve_again(
        &daemon.dir.join("tula.toml"),
        &daemon.dir.join("state"),
        &["--listen", "127.0.0.1:9101"],
    );
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains(&format!(
            "is owned by another tula daemon (pid {first_pid})"
        )) && stderr(&second).contains("state dir"),
        "{}",
        stderr(&second)
    );
    // Its own state dir but the same pin dir (the config's): refused on the pin dir.
    let other_state = daemon.dir.join("state-2");
    let second = daemon.serve_again(
        &daemon.dir.join("tula.toml"),
        &other_state,
        &["--listen", "127.0.0.1:9101"],
    );
    assert!(
        stderr(&second).contains(&format!(
            "pin dir {} is owned by another tula daemon (pid {first_pid})",
            daemon.pin_dir.display()
        )),
        "{}",
        stderr(&second)
    );
    // Same port too (the case that once reprogrammed the live data plane before failing to bind).
    let second = daemon.serve_again(
        &daemon.dir.join("tula.toml"),
        &daemon.dir.join("state"),
        &[],
    );
    assert!(
        stderr(&second).contains("owned by another tula daemon"),
        "{}",
        stderr(&second)
    );

    // The live daemon and its data plane are untouched.
    assert_eq!(daemon.ok(&["config", "history", "--json"]), history);
    let after: Value = serde_json::from_str(&daemon.ok(&["status", "--json"])).unwrap();
    let before: Value = serde_json::from_str(&before).unwrap();
    let names = |status: &Value| {
        status["vips"]
            .as_array()
            .or(status.as_array())
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(names(&after), names(&before));
    assert_eq!(names(&after).len(), 2, "{after}");

    // Off loopback without a token: refused before a state dir or pin dir is made.
    let fresh_pin = PathBuf::from(format!("{}-fresh", daemon.pin_dir.display()));
    let fresh_config = daemon.write(
        "fresh.toml",
        &format!(
            "interfaces = [\"lb0\"]\npin_dir = \"{}\"\n",
            fresh_pin.display()
        ),
    );
    let fresh_state = daemon.dir.join("fresh-state");
    let refused = daemon.serve_again(
        &fresh_config,
        &fresh_state,
        &["--listen", "198.18.0.1:9100"],
    );
    assert!(
        stderr(&refused).contains("not a loopback address, but the config sets no api.token"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !fresh_pin.exists() && !fresh_state.exists(),
        "nothing was touched"
    );
    // A port taken by someone else: refused before the data plane is loaded.
    let taken = daemon.serve_again(&fresh_config, &fresh_state, &["--listen", "127.0.0.1:9100"]);
    assert!(
        stderr(&taken).contains("listening on 127.0.0.1:9100"),
        "{}",
        stderr(&taken)
    );
    assert!(
        !fresh_pin.join("balancer").exists(),
        "no data plane was loaded"
    );
    let _ = std::fs::remove_dir_all(&fresh_pin);
}

#[test]
fn the_daemon_refuses_the_private_bpffs_of_ip_netns_exec() {
    let daemon = Daemon::start("netns-exec");
    let config = daemon.write(
        "exec.toml",
        &format!(
            "interfaces = [\"lb0\"]\npin_dir = \"{}-exec\"\n",
            daemon.pin_dir.display()
        ),
    );
    let refused = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            daemon.ns.name(),
            "timeout",
            "20",
            TULA,
            "serve",
            "--config",
        ])
        .arg(&config)
        .arg("--state-dir")
        .arg(daemon.dir.join("exec-state"))
        .arg("--socket")
        .arg(daemon.dir.join("exec.sock"))
        .arg("--listen")
        .arg("127.0.0.1:9102")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(&format!(
            "running under `ip netns exec {}`",
            daemon.ns.name()
        )) && stderr(&refused).contains(&format!("nsenter --net=/run/netns/{}", daemon.ns.name())),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn status_and_stats_narrow_to_a_vip_or_a_filter() {
    let daemon = Daemon::start("narrow");
    daemon.ok(&[
        "vip", "add", "api", "--address", "203.0.113.11", "--port", "80", "--backend", "198.18.100.7",
    ]);
    let names = |args: &[&str]| -> Vec<String> {
        let value: Value = serde_json::from_str(&daemon.ok(args)).unwrap();
        let vips = value.get("vips").unwrap_or(&value);
        vips.as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["status", "--json"]), ["web", "api"]);
    assert_eq!(names(&["status", "--json", "--vip", "api"]), ["api"]);
    assert_eq!(names(&["status", "--json", "--filter", "198.18.100.3"]), ["web"]);
    assert_eq!(names(&["status", "--json", "--filter", "113.11"]), ["api"]);
    assert_eq!(names(&["stats", "--json", "--vip", "web"]), ["web"]);
    let text = daemon.ok(&["status", "--filter", "nothing-like-this"]);
    assert!(text.lines().any(|line| line == "no VIP matches"), "{text}");
    // The node's announcements are narrowed like the table: none of the two VIPs is listed.
    assert!(text.contains("Node: ") && !text.contains("203.0.113."), "{text}");
    let text = daemon.ok(&["status", "--vip", "api"]);
    assert!(text.contains("203.0.113.11") && !text.contains("203.0.113.10"), "{text}");
    let missing = daemon.run(&["status", "--vip", "nope"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no VIP \"nope\""), "{}", stderr(&missing));
}

#[test]
fn completions_and_man_page_are_generated() {
    let bash = std::process::Command::new(TULA)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success());
    let script = String::from_utf8(bash.stdout).unwrap();
    assert!(
        script.contains("_tula()") && script.contains("backend") && script.contains("--json"),
        "{script}"
    );

    let man = std::process::Command::new(TULA)
        .arg("man")
        .output()
        .unwrap();
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH tula"),
        "{page}"
    );
    assert!(page.contains("status"), "{page}");
}

/// `tula serve` in a namespace of its own, and the files it uses; stopped,
/// unloaded and removed on drop.
struct Daemon {
    server: Option<Child>,
    log: PathBuf,
    dir: PathBuf,
    pin_dir: PathBuf,
    ns: Netns,
}

impl Daemon {
    fn start(name: &str) -> Daemon {
        let pid = std::process::id();
        let ns = Netns::create(&format!("tcli-{name}-{pid}")).expect("creating the test namespace");
        let dir = std::env::temp_dir().join(format!("tula-cli-test-{name}-{pid}"));
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/tula-test-cli-{name}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&pin_dir);
        std::fs::create_dir_all(&dir).unwrap();
        ns.run(build_topology).unwrap();
        let mut daemon = Daemon {
            server: None,
            log: dir.join("serve.log"),
            dir,
            pin_dir,
            ns,
        };
        let config = daemon.write("tula.toml", &daemon.config_text(WEB));
        let log = std::fs::File::create(&daemon.log).unwrap();
        let server = daemon
            .ns
            .command(TULA)
            .args([
                "serve",
                "--log-format",
                "json",
                "--config",
                path_str(&config),
                "--socket",
                path_str(&daemon.socket()),
                "--state-dir",
            ])
            .arg(daemon.dir.join("state"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting tula serve");
        daemon.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !daemon.run(&["status"]).status.success() {
            let exited = daemon.server.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "tula serve did not come up:\n{}",
                daemon.read_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    /// Runs a second `tula serve` on `config` and `state` (its own socket), which
    /// must exit within 20 s; its output.
    fn serve_again(&self, config: &Path, state: &Path, extra: &[&str]) -> Output {
        self.ns
            .command("timeout")
            .args(["20", TULA, "serve", "--config"])
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .arg("--socket")
            .arg(self.dir.join("second.sock"))
            .args(extra)
            .output()
            .unwrap()
    }

    /// The daemon's API socket, which the CLI uses on the same host.
    fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// Runs `tula ARGS` in the namespace, talking to the daemon over its socket.
    fn run(&self, args: &[&str]) -> Output {
        self.ns
            .command(TULA)
            .args(args)
            .env_remove("TULA_API")
            .env_remove("TULA_TOKEN")
            .env("TULA_SOCKET", self.socket())
            .output()
            .unwrap()
    }

    /// Runs `tula ARGS`, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "tula {} failed:\n{}",
            args.join(" "),
            stderr(&output)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn config_text(&self, vips: &str) -> String {
        format!(
            "interfaces = [\"lb0\"]\npin_dir = \"{}\"\nring_size = 4093\nconn_table_size = 4096\nmax_vips = 16\nmax_backends = 256\n{vips}",
            self.pin_dir.display()
        )
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn read_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; waits for a clean exit and returns the daemon's log.
    fn stop(&mut self) -> String {
        let mut server = self.server.take().expect("the daemon is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(exit) = server.try_wait().unwrap() {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "tula serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.read_log();
        assert!(exit.success(), "tula serve exited with {exit}:\n{log}");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        if self.pin_dir.exists() {
            let _ = self.run(&["dataplane", "unload", "--pin-dir", path_str(&self.pin_dir)]);
            let _ = std::fs::remove_dir_all(&self.pin_dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn build_topology() {
    tula_net::add_veth("lb0", "nh0", None).unwrap();
    tula_net::set_up("lb0").unwrap();
    tula_net::set_up("nh0").unwrap();
    tula_net::add_address("lb0", Ipv4Addr::new(198, 18, 0, 1).into(), 24).unwrap();
    let next_hop = Ipv4Addr::new(198, 18, 0, 2);
    tula_net::add_neighbour("lb0", next_hop, [0x02, 0, 0, 0, 0, 0x02]).unwrap();
    tula_net::add_route(Ipv4Addr::new(198, 18, 100, 0), 24, Some(next_hop), None).unwrap();
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}
