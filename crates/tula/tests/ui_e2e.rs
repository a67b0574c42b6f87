//! The web UI end to end, in a real headless browser on the lab network:
//! Debian's chromium, driven through chromedriver (WebDriver, with
//! fantoccini), both running inside the lab's lb namespace where `tula serve`
//! listens on 127.0.0.1:9100.
//!
//! The walk of the product description: log in, create a Layer 3 DSR VIP with
//! three backends and a TCP health check through the form, Save and apply,
//! check that the lab client's HTTP requests reach all three backends, drain
//! one from the UI, and submit an invalid form; every change reviewed before
//! Apply (Enter only reviews); /ui/; a conflict with a change the CLI made
//! meanwhile; the zero-backend warning; two revisions side by side and a
//! rollback; dark mode. Screenshots go to target/ui-screenshots/ (and to
//! docs/ with TULA_UPDATE_SCREENSHOTS=1).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use tula_lab::topology::{Topology, VIP_L3};
use tula_lab::Lab;

mod support;
use support::TestLab;

const TOKEN: &str = "ui-e2e-token-0123456789";
const UI: &str = "http://127.0.0.1:9100";
/// chromedriver's port inside the lb namespace (the namespace is the test's own).
const DRIVER_PORT: u16 = 9515;
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";


/// chromedriver (and so chromium) in the lb namespace; killed on drop.
struct Driver {
    child: Child,
    profile: PathBuf,
}

impl Driver {
    fn start(lab: &Lab) -> Driver {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's chromium and chromium-driver (scripts/setup.sh)"
            );
        }
        let profile = std::env::temp_dir().join(format!("tula-ui-e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let lb = tula_net::Netns::open(&lab.topology.ns_lb()).unwrap();
        let log = std::fs::File::create(profile.join("chromedriver.log")).unwrap();
        let child = lb
            .command(CHROMEDRIVER)
            .arg(format!("--port={DRIVER_PORT}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting chromedriver in the lb namespace");
        let driver = Driver { child, profile };
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = lb
            .run(|| loop {
                let address = SocketAddr::from((Ipv4Addr::LOCALHOST, DRIVER_PORT));
                if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            })
            .unwrap();
        assert!(ready, "chromedriver did not listen on port {DRIVER_PORT}");
        driver
    }

    /// The capabilities of a fresh headless chromium with this profile.
    fn capabilities(
        &self,
        tag: &str,
        mobile: bool,
        dark: bool,
    ) -> serde_json::Map<String, serde_json::Value> {
        let profile = self.profile.join(tag);
        let mut options = serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,800",
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        if dark {
            // prefers-color-scheme: dark (0 is dark in Blink's setting).
            let args = options["args"].as_array_mut().unwrap();
            args.push("--blink-settings=preferredColorScheme=0".into());
            args.push("--force-dark-mode".into());
        }
        if mobile {
            options["mobileEmulation"] = serde_json::json!({"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 1.0}});
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert("goog:chromeOptions".into(), options);
        capabilities
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn browser(driver: &Driver, tag: &str, mobile: bool) -> Client {
    browser_with(driver, tag, mobile, false).await
}

async fn browser_with(driver: &Driver, tag: &str, mobile: bool, dark: bool) -> Client {
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(driver.capabilities(tag, mobile, dark))
        .connect(&format!("http://127.0.0.1:{DRIVER_PORT}"))
        .await
        .expect("a WebDriver session with chromium")
}

/// What a page of another origin tries against the daemon on loopback: a
/// text/plain form (the classic JSON CSRF), a no-cors fetch, a JSON fetch
/// (needs a CORS preflight), a rollback without a body, and the UI's own
/// delete form (the session cookie is SameSite=Strict). Then it says "done".
const ATTACK_PAGE: &str = r#"<!doctype html><title>attack</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" method="post" enctype="text/plain" target="sink1" action="UI/api/vips">
<input name='{"name":"evil1","address":"203.0.113.66","port":80,"x":"' value='"}'></form>
<form id="ui" method="post" target="sink2" action="UI/ui/vips/shop/delete"><input name="csrf" value="guess"></form>
<script>
(async () => {
  const body = JSON.stringify({name: "evil2", address: "203.0.113.67", port: 80});
  const tries = [
    fetch("UI/api/vips", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body}),
    fetch("UI/api/vips", {method: "POST", headers: {"Content-Type": "application/json"}, body, credentials: "include"}),
    fetch("UI/api/revisions/1/rollback", {method: "POST", mode: "no-cors", credentials: "include"}),
  ];
  for (const attempt of tries) { try { await attempt; } catch (e) {} }
  document.getElementById("plain").submit();
  document.getElementById("ui").submit();
  setTimeout(() => { document.title = "done"; }, 2000);
})();
</script>"#;

async fn attack_from_another_origin(client: &Client, lab: &Lab) {
    let before = revision(lab);
    // Another port is another origin; this thread is in the lb namespace.
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let evil = format!("http://{}/", listener.local_addr().unwrap());
    let page = ATTACK_PAGE.replace("UI/", &format!("{UI}/"));
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten().take(8) {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    client.goto(&evil).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while client.title().await.unwrap() != "done" {
        assert!(Instant::now() < deadline, "the attack page did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(revision(lab), before, "no attempt changed anything");
    let vips = lab.tula(&["vip", "list"]).unwrap();
    assert!(!vips.contains("evil") && vips.contains("shop"), "{vips}");
    // The attempts reached the daemon and were refused there, not lost on the way.
    let log = std::fs::read_to_string(lab.topology.run_dir().join("lb.log")).unwrap();
    assert!(log.contains("change refused: sent by a page of another origin"), "{log}");
}

/// The running config's revision, read from the API (loopback: no token needed).
fn revision(lab: &Lab) -> u64 {
    let lb = tula_net::Netns::open(&lab.topology.ns_lb()).unwrap();
    let body = lb
        .run(|| {
            tula_lab::http::Client::connect(([127, 0, 0, 1], 9100).into(), Duration::from_secs(5))
                .and_then(|mut c| c.request("/api/config", None, false))
        })
        .unwrap()
        .expect("GET /api/config");
    let json: serde_json::Value = serde_json::from_str(&body).expect("the API answers JSON");
    json["revision"].as_u64().expect("a revision number")
}

/// Saves a screenshot under target/ui-screenshots, and in docs/ when asked to.
fn save_screenshot(name: &str, png: &[u8]) {
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join(name), png).unwrap();
    if std::env::var_os("TULA_UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::write(docs.join(name), png).unwrap();
    }
}

/// Sizes the window so that the page itself gets `width` x `height` pixels.
async fn set_viewport(client: &Client, width: u32, height: u32) {
    client.set_window_size(width, height).await.unwrap();
    let inner = client
        .execute("return [window.innerWidth, window.innerHeight]", vec![])
        .await
        .unwrap();
    let inner_width = inner[0].as_u64().unwrap() as u32;
    let inner_height = inner[1].as_u64().unwrap() as u32;
    client
        .set_window_size(width * 2 - inner_width, height * 2 - inner_height)
        .await
        .unwrap();
}

async fn scroll_to(client: &Client, css: &str) {
    let script = format!("document.querySelector({css:?}).scrollIntoView()");
    client.execute(&script, vec![]).await.unwrap();
}

async fn text(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn fill(client: &Client, css: &str, value: &str) {
    let input = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no field {css}: {e}"));
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

/// Presses and releases one key, as a person at the keyboard would.
async fn press(client: &Client, key: Key) {
    let key: char = key.into();
    let actions = KeyActions::new("keyboard".to_string())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    client.perform_actions(actions).await.unwrap();
}

async fn focused_id(client: &Client) -> Option<String> {
    client
        .active_element()
        .await
        .unwrap()
        .attr("id")
        .await
        .unwrap()
}

async fn wait_for_path(client: &Client, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = client.current_url().await.unwrap();
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        if path.starts_with(prefix) {
            return path;
        }
        assert!(
            Instant::now() < deadline,
            "still at {path}, expected {prefix}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_operator_walks_the_l4_vip_pages_in_a_browser() {
    // Flows count as active for 3 s, sampled every 500 ms: a drain ends within the walk.
    let lab = TestLab::with_serve_args("ui", 3, 1, &["--active-window", "3s", "--flow-sample-interval", "500ms"]);
    // A token, so the UI asks for a login (the lab's daemon has none on loopback).
    let saved = lab.topology.run_dir().join("tula.toml");
    let mut config =
        tula_config::Config::from_toml_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    config.api.token = Some(TOKEN.to_string());
    let with_token = lab.topology.run_dir().join("with-token.toml");
    std::fs::write(&with_token, config.to_toml_string()).unwrap();
    lab.tula(&["apply", "-f", &with_token.to_string_lossy()])
        .unwrap();

    let driver = Driver::start(&lab);
    let lb = tula_net::Netns::open(&lab.topology.ns_lb()).unwrap();
    // The WebDriver client's sockets must be made in the lb namespace: a
    // thread there, with its own single-threaded runtime.
    lb.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(walk(&lab, &driver));
    })
    .unwrap();
}

async fn walk(lab: &TestLab, driver: &Driver) {
    let client = browser(driver, "desktop", false).await;
    client.goto(&format!("{UI}/ui/login")).await.unwrap();
    set_viewport(&client, 1280, 800).await;

    // 1. Log in with the API token.
    client.goto(&format!("{UI}/ui/vips")).await.unwrap();
    wait_for_path(&client, "/ui/login").await;
    fill(&client, "#f-token", "not-the-token-at-all").await;
    click(&client, "form[action='/ui/login'] button[type=submit]").await;
    assert_eq!(
        text(&client, "#e-token").await,
        "that is not the API token (api.token in the daemon's config)"
    );
    fill(&client, "#f-token", TOKEN).await;
    click(&client, "form[action='/ui/login'] button[type=submit]").await;
    wait_for_path(&client, "/ui/vips").await;
    assert_eq!(text(&client, "main h1").await, "L4 Virtual IPs");
    assert_eq!(
        text(&client, "nav.side a[aria-current=page]").await,
        "L4 Virtual IPs"
    );
    let cookies = client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "tula_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(
        session.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );

    // The lab's own Layer 3 VIP goes first, so the one made here is the only way to 203.0.113.10.
    client.goto(&format!("{UI}/ui/vips/web")).await.unwrap();
    click(&client, "form[action='/ui/vips/web/delete'] button").await;
    // Remove is reviewed first: the change list, then Apply.
    assert!(text(&client, "#review-changes").await.contains("- vips[web]"));
    assert_eq!(focused_id(&client).await.as_deref(), Some("apply"), "Apply takes the focus");
    click(&client, "#apply").await;
    wait_for_path(&client, "/ui/vips?applied=").await;
    assert!(
        client
            .find(Locator::Css("tr[data-vip='web']"))
            .await
            .is_err(),
        "web is gone from the list"
    );
    let unreachable = lab.send_requests(VIP_L3, 1);
    assert!(
        unreachable.is_err(),
        "203.0.113.10 still answers without its VIP: {unreachable:?}"
    );

    // 2. Create a Layer 3 DSR VIP with three backends and a TCP health check.
    click(&client, "a[href='/ui/vips/new']").await;
    wait_for_path(&client, "/ui/vips/new").await;
    // By keyboard: "Skip to content" comes first and leads to the form.
    press(&client, Key::Tab).await;
    let skip = client.active_element().await.unwrap();
    assert_eq!(skip.text().await.unwrap(), "Skip to content");
    press(&client, Key::Enter).await;
    assert_eq!(focused_id(&client).await.as_deref(), Some("main"));
    press(&client, Key::Tab).await; // the breadcrumb's link
    press(&client, Key::Tab).await;
    assert_eq!(focused_id(&client).await.as_deref(), Some("f-name"));
    // Every field has a label, and nothing but links and buttons is clickable.
    let unlabelled = client
        .execute(
            "return Array.from(document.querySelectorAll('main input:not([type=hidden]), main select'))\
             .filter(e => !e.labels || e.labels.length === 0).map(e => e.id)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, serde_json::json!([]), "fields without a label");
    let clickable = client
        .execute(
            "return document.querySelectorAll('[onclick], div[tabindex]:not([role=region]), span[tabindex]').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(clickable, serde_json::json!(0));
    fill(&client, "#f-name", "shop").await;
    fill(&client, "#f-address", &VIP_L3.to_string()).await;
    fill(&client, "#f-port", "80").await;
    client
        .find(Locator::Css("#f-protocol"))
        .await
        .unwrap()
        .select_by_value("tcp")
        .await
        .unwrap();
    client
        .find(Locator::Css("#f-mode"))
        .await
        .unwrap()
        .select_by_value("dsr")
        .await
        .unwrap();
    click(&client, "#f-dsr_type").await;
    assert_eq!(
        client
            .find(Locator::Css("label[for='f-dsr_type']"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Layer 3 (IPIP Tunnel)"
    );
    click(&client, "#dsr-help summary").await;
    assert!(text(&client, "#dsr-help")
        .await
        .contains("Minimal (20-byte IP header)"));
    client
        .find(Locator::Css("#f-scheduler"))
        .await
        .unwrap()
        .select_by_value("maglev")
        .await
        .unwrap();
    client
        .find(Locator::Css("#f-hc_type"))
        .await
        .unwrap()
        .select_by_value("tcp")
        .await
        .unwrap();
    fill(&client, "#f-hc_interval", "1s").await;
    fill(&client, "#f-hc_timeout", "500ms").await;
    for i in 1..=3u8 {
        if i > 1 {
            click(&client, "#add-backend").await;
        }
        let row = i - 1;
        // "Add backend" puts the focus in the new row's address field.
        if i > 1 {
            let focused = client
                .active_element()
                .await
                .unwrap()
                .attr("id")
                .await
                .unwrap();
            assert_eq!(
                focused.as_deref(),
                Some(format!("f-b{row}_address").as_str())
            );
        }
        fill(
            &client,
            &format!("#f-b{row}_address"),
            &Topology::backend_addr(i).to_string(),
        )
        .await;
        fill(&client, &format!("#f-b{row}_weight"), "1").await;
    }
    let viewport = client
        .execute("return [window.innerWidth, window.innerHeight]", vec![])
        .await
        .unwrap();
    assert_eq!(viewport, serde_json::json!([1280, 800]));
    client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    save_screenshot("ui-vip-form.png", &client.screenshot().await.unwrap());
    scroll_to(&client, "#health-check").await;
    save_screenshot(
        "ui-vip-form-backends.png",
        &client.screenshot().await.unwrap(),
    );

    // 3. Save shows the review (Enter in a field does the same, never applies); Apply applies.
    let before = revision(lab);
    client
        .find(Locator::Css("#f-b2_weight"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    wait_for_path(&client, "/ui/vips/new").await;
    let changes = text(&client, "#review-changes").await;
    assert!(changes.contains("+ vips[shop]"), "{changes}");
    assert_eq!(revision(lab), before, "Enter reviews; nothing is applied");
    save_screenshot("ui-review.png", &client.screenshot().await.unwrap());
    click(&client, "#apply").await;
    let path = wait_for_path(&client, "/ui/vips/shop?applied=").await;
    assert_eq!(path, format!("/ui/vips/shop?applied={}", before + 1));
    assert_eq!(
        text(&client, "#applied-revision").await,
        (before + 1).to_string()
    );
    assert_eq!(revision(lab), before + 1);
    for i in 1..=3 {
        let row = format!(
            "tr[data-backend='{}'] [data-live=state]",
            Topology::backend_addr(i)
        );
        assert_eq!(text(&client, &row).await, "active");
    }
    // Backend setup is a page of its own, one click from the VIP's.
    click(&client, "a.button[href='/ui/vips/shop/setup']").await;
    wait_for_path(&client, "/ui/vips/shop/setup").await;
    let setup = text(&client, "#setup").await;
    assert!(
        setup.contains("tula decap setup --vip 203.0.113.10"),
        "{setup}"
    );
    assert!(
        setup.contains("ip link show tunl0 >/dev/null 2>&1 || ip tunnel add tunl0 mode ipip local 198.18.11.2"),
        "{setup}"
    );
    assert!(
        setup.contains("tula decap verify --vip 203.0.113.10"),
        "{setup}"
    );

    // 4. The lab client's HTTP requests reach all three backends.
    let spread = lab.send_requests(VIP_L3, 90).unwrap();
    assert_eq!(spread.len(), 3, "{spread:?}");
    assert_eq!(spread.values().sum::<usize>(), 90);

    // The list: live rates while traffic flows (two samples make a rate).
    client.goto(&format!("{UI}/ui/vips")).await.unwrap();
    // Traffic flows on another thread until the list shows it (20 s at most).
    let opts = lab.options.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flowing = stop.clone();
    let traffic = std::thread::spawn(move || {
        let lab = Lab::new(&opts).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        // About 100 connections a second: the client's ports must not wrap
        // around into flows the connection table still holds (see step 5).
        while !flowing.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            lab.send_requests(VIP_L3, 10)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok::<_, tula_lab::LabError>(())
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pps = text(&client, "tr[data-vip='shop'] [data-live=pps]").await;
        if pps.ends_with("pkt/s") && !pps.starts_with("0 ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the packet rate never showed traffic: {pps:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        text(&client, "tr[data-vip='shop'] [data-live=backends]").await,
        "3 / 3"
    );
    let png = client.screenshot().await.unwrap();
    save_screenshot("ui-vip-list.png", &png);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.join().unwrap().unwrap();

    // 5. Drain one backend from the UI: its state changes, new connections avoid it.
    let drained = Topology::backend_addr(2);
    client.goto(&format!("{UI}/ui/vips/shop")).await.unwrap();
    let before = revision(lab);
    click(
        &client,
        &format!("button[aria-label='Drain backend {drained}']"),
    )
    .await;
    assert!(text(&client, "#review-changes")
        .await
        .contains(&format!("~ vips[shop].backends[{drained}].state: active -> drain")));
    click(&client, "#apply").await;
    wait_for_path(&client, &format!("/ui/vips/shop?applied={}", before + 1)).await;
    assert_eq!(
        text(
            &client,
            &format!("tr[data-backend='{drained}'] [data-live=state]")
        )
        .await,
        "drain"
    );
    assert_eq!(
        text(&client, "#backends [data-live=draining]").await,
        "1 draining"
    );
    let spread = lab.send_requests(VIP_L3, 60).unwrap();
    assert!(
        !spread.contains_key("be2"),
        "a new connection reached the drained backend: {spread:?}"
    );
    assert_eq!(spread.len(), 2, "{spread:?}");
    // Once the live figures are in: the page's top, and the Backend setup panel.
    client.refresh().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while text(&client, "#counters [data-live=pps]").await == "…" {
        assert!(Instant::now() < deadline, "the live counters never came");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A row's live figures are found by their column's header: a figure
    // overwritten here comes back from the next poll.
    let packets = format!("tr[data-backend='{}'] td:nth-child(7)", Topology::backend_addr(1));
    client
        .execute(
            &format!("document.querySelector(\"{packets}\").textContent = 'x'"),
            vec![],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while text(&client, &packets).await == "x" {
        assert!(Instant::now() < deadline, "the row's packets were never updated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let figure = text(&client, &packets).await;
    assert!(figure.chars().any(|c| c.is_ascii_digit()), "{figure}");
    // The drained backend's flows go quiet: the note under its state says when the drain ended.
    let note = format!("tr[data-backend='{drained}'] [data-live=drain]");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let said = text(&client, &note).await;
        if said.starts_with("drained — no flows") {
            break;
        }
        assert!(Instant::now() < deadline, "the drain never ended: {said:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    save_screenshot("ui-vip-detail.png", &client.screenshot().await.unwrap());
    client.goto(&format!("{UI}/ui/vips/shop/setup")).await.unwrap();
    save_screenshot("ui-vip-setup.png", &client.screenshot().await.unwrap());
    client.goto(&format!("{UI}/ui/vips/shop")).await.unwrap();

    // 6. An invalid form: a backend port other than the VIP's, a bad address.
    click(&client, "a[href='/ui/vips/shop/edit']").await;
    wait_for_path(&client, "/ui/vips/shop/edit").await;
    let before = revision(lab);
    fill(&client, "#f-b0_port", "8080").await;
    fill(&client, "#f-b2_address", "198.18.13.300").await;
    click(&client, "#save").await;
    let summary = text(&client, "#error-summary").await;
    assert!(summary.contains("Not applied: 2 problems"), "{summary}");
    let focused = client
        .active_element()
        .await
        .unwrap()
        .attr("id")
        .await
        .unwrap();
    assert_eq!(
        focused.as_deref(),
        Some("error-summary"),
        "the summary takes the focus"
    );
    // Each error sits in the same cell as its field.
    for (field, message) in [
        (
            "b0_port",
            "8080 differs from the VIP port 80; DSR cannot translate ports",
        ),
        ("b2_address", "\"198.18.13.300\" is not an IP address"),
    ] {
        let cell = client
            .find(Locator::Css(&format!("#f-{field}")))
            .await
            .unwrap()
            .find(Locator::XPath(".."))
            .await
            .unwrap();
        let error = cell
            .find(Locator::Css(&format!("#e-{field}")))
            .await
            .unwrap();
        assert_eq!(error.text().await.unwrap(), message);
        let input = cell
            .find(Locator::Css(&format!("#f-{field}")))
            .await
            .unwrap();
        assert_eq!(
            input.attr("aria-invalid").await.unwrap().as_deref(),
            Some("true")
        );
    }
    assert_eq!(
        text(&client, "#unchanged-revision").await,
        before.to_string()
    );
    assert_eq!(revision(lab), before, "nothing was applied");
    let png = client.screenshot().await.unwrap();
    save_screenshot("ui-vip-form-errors.png", &png);
    // The running VIP still serves on its two active backends.
    let spread = lab.send_requests(VIP_L3, 30).unwrap();
    assert_eq!(spread.values().sum::<usize>(), 30);

    // 7. /ui/, the documented address, leads to the list.
    client.goto(&format!("{UI}/ui/")).await.unwrap();
    wait_for_path(&client, "/ui/vips").await;
    assert_eq!(text(&client, "main h1").await, "L4 Virtual IPs");

    // 8. A conflict: the form was opened at one revision and the CLI applied a change meanwhile.
    client.goto(&format!("{UI}/ui/vips/shop/edit")).await.unwrap();
    fill(&client, "#f-b0_weight", "2").await;
    let opened_at = revision(lab);
    let third = Topology::backend_addr(3).to_string();
    lab.tula(&["backend", "set", "shop", &third, "--weight", "3", "--token", TOKEN])
        .unwrap();
    click(&client, "#save").await;
    let conflict = text(&client, "#conflict").await;
    assert!(
        conflict.contains(&format!("based on revision {opened_at}")),
        "{conflict}"
    );
    let since = text(&client, "#conflict-changes").await;
    assert!(
        since.contains(&format!("~ vips[shop].backends[{third}].weight: 1 -> 3")),
        "{since}"
    );
    assert_eq!(revision(lab), opened_at + 1, "the other change stays; ours is not applied");
    save_screenshot("ui-conflict.png", &client.screenshot().await.unwrap());

    // 9. Removing every backend: the review warns that the VIP would drop everything.
    client.goto(&format!("{UI}/ui/vips/shop/edit")).await.unwrap();
    for _ in 0..3 {
        click(&client, "button.remove-row").await;
    }
    click(&client, "#save").await;
    let warnings = text(&client, "#review-warnings").await;
    assert!(
        warnings.contains("VIP shop has no backends: every packet to 203.0.113.10:80/tcp is dropped"),
        "{warnings}"
    );
    save_screenshot("ui-review-warning.png", &client.screenshot().await.unwrap());
    click(&client, "main a.button").await; // Cancel
    wait_for_path(&client, "/ui/vips/shop").await;
    assert_eq!(revision(lab), opened_at + 1, "Cancel applies nothing");

    // 10. Revisions: the last two side by side, then a rollback reviewed and applied.
    client.goto(&format!("{UI}/ui/revisions")).await.unwrap();
    click(&client, "#compare-button").await;
    wait_for_path(&client, "/ui/revisions/diff").await;
    let diff = text(&client, "#revision-diff").await;
    assert!(diff.contains("weight = 3"), "{diff}");
    save_screenshot("ui-revisions-diff.png", &client.screenshot().await.unwrap());
    client.goto(&format!("{UI}/ui/revisions")).await.unwrap();
    click(
        &client,
        &format!("button[aria-label='Roll back to revision {opened_at}']"),
    )
    .await;
    let changes = text(&client, "#review-changes").await;
    assert!(
        changes.contains(&format!("~ vips[shop].backends[{third}].weight: 3 -> 1")),
        "{changes}"
    );
    click(&client, "#apply").await;
    wait_for_path(&client, &format!("/ui/revisions?applied={}", opened_at + 2)).await;
    assert_eq!(revision(lab), opened_at + 2);

    // 11. A page of another origin, opened in this logged-in browser, tries to change the balancer.
    attack_from_another_origin(&client, lab).await;
    client.close().await.unwrap();

    // Dark mode: the browser prefers dark; the pages follow.
    let dark = browser_with(driver, "dark", false, true).await;
    dark.goto(&format!("{UI}/ui/login")).await.unwrap();
    set_viewport(&dark, 1280, 800).await;
    let prefers: serde_json::Value = dark
        .execute("return window.matchMedia('(prefers-color-scheme: dark)').matches", vec![])
        .await
        .unwrap();
    assert_eq!(prefers, serde_json::json!(true));
    fill(&dark, "#f-token", TOKEN).await;
    click(&dark, "form[action='/ui/login'] button[type=submit]").await;
    wait_for_path(&dark, "/ui/vips").await;
    let ground: serde_json::Value = dark
        .execute("return getComputedStyle(document.documentElement).backgroundColor", vec![])
        .await
        .unwrap();
    assert_eq!(ground, serde_json::json!("rgb(18, 23, 30)"), "the dark ground");
    save_screenshot("ui-vip-list-dark.png", &dark.screenshot().await.unwrap());
    dark.close().await.unwrap();

    // The form at phone width: one column, the backends as cards.
    let phone = browser(driver, "phone", true).await;
    phone.goto(&format!("{UI}/ui/login")).await.unwrap();
    fill(&phone, "#f-token", TOKEN).await;
    click(&phone, "form[action='/ui/login'] button[type=submit]").await;
    wait_for_path(&phone, "/ui/vips").await;
    phone
        .goto(&format!("{UI}/ui/vips/shop/edit"))
        .await
        .unwrap();
    let width: serde_json::Value = phone
        .execute("return document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    assert_eq!(width.as_u64(), Some(390));
    let scroll: serde_json::Value = phone
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .unwrap();
    assert!(
        scroll.as_u64().unwrap() <= 390,
        "the page scrolls sideways on a phone: {scroll}"
    );
    scroll_to(&phone, "#backends").await;
    save_screenshot("ui-vip-form-phone.png", &phone.screenshot().await.unwrap());
    phone.close().await.unwrap();
}
