//! Web UI benchmark at 1,000 VIPs x 100 backends: `tula serve` with the
//! generated config (crates/tula-bench/src/control_plane.rs) in a namespace
//! of its own, and the time and size of the pages an operator opens: the VIP
//! list (first page, a later page, a search, a filter), one VIP's page
//! with its 100 backends, and its Backend setup page. Times are medians (and the slowest) of sequential
//! requests on one keep-alive connection, the whole answer read; "x floor"
//! is each median over the stylesheet's, served by the same daemon in the same run.
//!
//! `cargo bench -p tula-bench --bench ui` (root; needs the `tula` executable,
//! see `api_load::tula_bin`). With TULA_BENCH_QUICK=1 (and under `cargo
//! test`) it runs at 10 x 10.

use std::time::{Duration, Instant};

use tula_bench::api_load::Daemon;
use tula_bench::control_plane::{config_toml, load_options, CpNet, Scale, Workdir, BENCH_TOKEN};
use tula_bench::machine::Machine;
use tula_bench::samples::Samples;
use tula_bench::size::Size;

const LISTEN: &str = "127.0.0.1:9100";
const BASELINE: &str = "stylesheet (baseline)";

fn main() {
    let size = Size::from_env();
    println!("{}", Machine::read());
    let scale = Scale::for_size(size);
    println!("size: {size:?}, {} VIPs x {} backends", scale.vips, scale.backends);
    let net = CpNet::create(&format!("tbu{}", std::process::id()));
    let work = Workdir::new("ui");
    // The rings' size does not change what the UI shows: a small one starts faster.
    let mut options = load_options(scale, size);
    options.ring_size = 4093;
    options.conn_table_size = 65_536;
    let text = config_toml(scale, &options, &work.pin_dir, LISTEN.parse().unwrap());
    let daemon = Daemon::start(&net.ns, work, &text);
    println!("tula serve answered after {:.1} s", daemon.started_in.as_secs_f64());
    let rounds = size.pick(3, 20);
    let middle = scale.vips / 2;
    let pages = [
        // The floor of the same run: a static asset, no page made, no state read.
        (BASELINE.to_string(), "/ui/static/ui.css".to_string()),
        ("VIP list, page 1".to_string(), "/ui/vips".to_string()),
        ("VIP list, page 10".to_string(), "/ui/vips?page=10".to_string()),
        ("VIP list, search \"vip05\"".to_string(), "/ui/vips?q=vip05".to_string()),
        ("VIP list, Layer 2 only (none)".to_string(), "/ui/vips?dsr=l2".to_string()),
        (
            format!("VIP page, {} backends", scale.backends),
            format!("/ui/vips/vip{middle:04}"),
        ),
        // Each backend serves every VIP here, so its commands name them all.
        (
            format!("Backend setup, {} VIPs", scale.vips),
            format!("/ui/vips/vip{middle:04}/setup"),
        ),
    ];
    let figures = net
        .ns
        .run(|| {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                // A page that sends to the login form must fail, not be measured.
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(120)))
                .build()
                .into();
            let cookie = log_in(&agent);
            pages
                .iter()
                .map(|(label, path)| {
                    let mut times = Samples::new();
                    let mut bytes = 0;
                    let mut gzipped = 0;
                    let mut page = Vec::new();
                    for _ in 0..rounds {
                        let start = Instant::now();
                        let mut response = agent
                            .get(format!("http://{LISTEN}{path}"))
                            .header("Cookie", &cookie)
                            .call()
                            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
                        assert_eq!(response.status(), 200, "GET {path}");
                        let body = response.body_mut().read_to_vec().expect("reading the page");
                        times.push(start.elapsed().as_secs_f64() * 1000.0);
                        bytes = body.len();
                        page = body;
                    }
                    // Kept to see what a page's bytes are made of.
                    let file = tula_bench::results::bench_dir().join(format!("ui-{}.html", file_name(label)));
                    if let Err(e) = std::fs::create_dir_all(file.parent().unwrap()).and_then(|()| std::fs::write(&file, &page)) {
                        eprintln!("cannot keep {}: {e}", file.display());
                    }
                    // What a browser that takes gzip receives.
                    let mut response = agent
                        .get(format!("http://{LISTEN}{path}"))
                        .header("Cookie", &cookie)
                        .header("Accept-Encoding", "gzip")
                        .call()
                        .expect("GET with gzip");
                    if let Ok(body) = response.body_mut().read_to_vec() {
                        gzipped = body.len();
                    }
                    (label.clone(), path.clone(), times, bytes, gzipped)
                })
                .collect::<Vec<_>>()
        })
        .expect("entering the namespace");
    println!("\n== web UI at {} VIPs x {} backends ({rounds} requests each)", scale.vips, scale.backends);
    let floor = figures[0].2.median();
    println!("{:<32} {:>10} {:>10} {:>9} {:>11} {:>10}  path", "page", "median ms", "max ms", "x floor", "bytes", "gzipped");
    for (label, path, times, bytes, gzipped) in &figures {
        println!(
            "{label:<32} {:>10.1} {:>10.1} {:>9.1} {bytes:>11} {gzipped:>10}  {path}",
            times.median(),
            times.max(),
            times.median() / floor
        );
    }
    drop(daemon);
    println!("\npages kept in {}/ui-*.html", tula_bench::results::bench_dir().display());
    println!("\n{}", Machine::read());
}

/// A logged-in session's cookie: the generated config sets an API token, so
/// the UI asks for it once (GET the login form for its CSRF field, POST it).
fn log_in(agent: &ureq::Agent) -> String {
    let cookie_of = |response: &ureq::http::Response<ureq::Body>| {
        response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
    };
    let mut form = agent.get(format!("http://{LISTEN}/ui/login")).call().expect("GET /ui/login");
    let cookie = cookie_of(&form).expect("a session cookie before login");
    let page = form.body_mut().read_to_string().expect("reading the login form");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the login form's CSRF field");
    let body = format!("csrf={csrf}&token={BENCH_TOKEN}");
    let logged_in = agent
        .post(format!("http://{LISTEN}/ui/login"))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Origin", format!("http://{LISTEN}"))
        .send(body)
        .expect("POST /ui/login");
    assert_eq!(logged_in.status(), 303, "logging in with the bench's token");
    cookie_of(&logged_in).expect("the logged-in session's cookie")
}

/// "VIP list, page 1" -> "vip-list-page-1".
fn file_name(label: &str) -> String {
    let words: Vec<String> = label
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    words.join("-")
}
