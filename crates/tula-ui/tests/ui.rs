//! The web UI over HTTP, without a browser: login into a session cookie and
//! its flags, CSRF checks on every state-changing request, and the VIP form's
//! Save and apply (errors next to their fields, nothing applied on error).
//! Served by a real Control in a private network namespace, one per test.
//!
//! Topology inside each namespace (as in tests/api.rs):
//!   lb0 (198.18.0.1/24) <-veth-> nh0; next hop 198.18.0.2 routes 198.18.100.0/24

#[path = "../../tula-api/tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tula_control::Control;
use tula_net::Netns;

const TOKEN: &str = "ui-test-token-0123456789";

const WEB: &str = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{ address = "198.18.100.2" }, { address = "198.18.100.3" }]
"#;

#[test]
fn login_with_the_token_opens_a_strict_http_only_session() {
    let daemon = Daemon::start("login", Some(TOKEN));
    let http = Http::new(daemon.address);

    // Not logged in: every page leads to the login page, and the JSON says 401.
    let first = http.get("/ui/vips", None);
    assert_eq!(first.status, 303);
    assert_eq!(first.location.as_deref(), Some("/ui/login"));
    let cookie = first.session_cookie().expect("a session cookie is set");
    let flags = first.cookie_attributes();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(
            flags.contains(&flag.to_string()),
            "cookie flags {flags:?} lack {flag}"
        );
    }
    assert!(flags.iter().any(|f| f.starts_with("Max-Age=")), "{flags:?}");
    assert_eq!(
        cookie.len(),
        "tula_session=".len() + 64,
        "a 256-bit random id: {cookie}"
    );
    assert_eq!(http.get("/ui/status.json", Some(&cookie)).status, 401);
    assert_eq!(http.get("/ui/vips/web", Some(&cookie)).status, 303);

    let login = http.get("/ui/login", Some(&cookie));
    assert_eq!(login.status, 200);
    assert!(login.body.contains("type=\"password\""), "{}", login.body);
    let csrf = login.csrf();

    // Wrong token, no token, no CSRF token: refused.
    let wrong = http.post(
        "/ui/login",
        Some(&cookie),
        &[("csrf", &csrf), ("token", "not-the-token-at-all")],
    );
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains("that is not the API token"),
        "{}",
        wrong.body
    );
    let empty = http.post(
        "/ui/login",
        Some(&cookie),
        &[("csrf", &csrf), ("token", "")],
    );
    assert_eq!(empty.status, 401);
    let forged = http.post("/ui/login", Some(&cookie), &[("token", TOKEN)]);
    assert_eq!(
        forged.status, 403,
        "a login without the CSRF token is refused"
    );

    // The right token: a new session id (the one planted before login is worthless).
    let ok = http.post(
        "/ui/login",
        Some(&cookie),
        &[("csrf", &csrf), ("token", TOKEN)],
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location.as_deref(), Some("/ui/vips"));
    let session = ok.session_cookie().expect("login sets the session cookie");
    assert_ne!(session, cookie);
    assert!(ok.cookie_attributes().contains(&"HttpOnly".to_string()));
    assert_eq!(
        http.get("/ui/vips", Some(&cookie)).status,
        303,
        "the pre-login id grants nothing"
    );

    let list = http.get("/ui/vips", Some(&session));
    assert_eq!(list.status, 200);
    assert!(list.body.contains("L4 Virtual IPs") && list.body.contains("Load Balancing"));
    assert!(list.body.contains("203.0.113.10:80/tcp"), "{}", list.body);
    assert!(list.body.contains("Log out"));
    let csp = list.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(http.get("/ui/status.json", Some(&session)).status, 200);

    // The API itself still wants its bearer token where it did.
    assert_eq!(
        http.get("/api/nothing", None).status,
        404,
        "loopback: no token needed, JSON 404"
    );

    // Logging out ends the session.
    let csrf = list.csrf();
    let out = http.post("/ui/logout", Some(&session), &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert!(out.cookie_attributes().contains(&"Max-Age=0".to_string()));
    assert_eq!(http.get("/ui/vips", Some(&session)).status, 303);

    // A changed token ends every session logged in with the old one.
    let again = http.get("/ui/login", Some(&session));
    let cookie = again.session_cookie().unwrap();
    let csrf = http.get("/ui/login", Some(&cookie)).csrf();
    let session = http
        .post(
            "/ui/login",
            Some(&cookie),
            &[("csrf", &csrf), ("token", TOKEN)],
        )
        .session_cookie()
        .unwrap();
    assert_eq!(http.get("/ui/vips", Some(&session)).status, 200);
    let mut config = daemon.control.running().1;
    config.api.token = Some("another-token-0123456789".to_string());
    daemon.control.apply(config, "test: new token").unwrap();
    assert_eq!(http.get("/ui/vips", Some(&session)).status, 303);
}

#[test]
fn a_flood_of_cookieless_requests_leaves_logins_and_login_forms_working() {
    let daemon = Daemon::start("flood", Some(TOKEN));
    let http = Http::new(daemon.address);
    let login = |cookie: &str, csrf: &str| {
        http.post(
            "/ui/login",
            Some(cookie),
            &[("csrf", csrf), ("token", TOKEN)],
        )
    };
    let cookie = http.get("/ui/login", None).session_cookie().unwrap();
    let csrf = http.get("/ui/login", Some(&cookie)).csrf();
    let session = login(&cookie, &csrf).session_cookie().unwrap();
    // A login form opened before the flood and sent after it.
    let waiting = http.get("/ui/login", None);
    let (waiting_cookie, waiting_csrf) = (waiting.session_cookie().unwrap(), waiting.csrf());

    for _ in 0..1100 {
        let reply = http.get("/ui/vips", None);
        assert_eq!(reply.status, 303);
        assert!(reply.session_cookie().is_some());
    }

    assert_eq!(
        http.get("/ui/vips", Some(&session)).status,
        200,
        "still logged in"
    );
    let late = login(&waiting_cookie, &waiting_csrf);
    assert_eq!(
        late.status, 303,
        "the waiting login form still works: {}",
        late.body
    );
    let late = late.session_cookie().unwrap();
    assert_eq!(http.get("/ui/vips", Some(&late)).status, 200);
    let fresh = http.get("/ui/login", None);
    let fresh = login(&fresh.session_cookie().unwrap(), &fresh.csrf());
    assert_eq!(fresh.status, 303, "a fresh login succeeds: {}", fresh.body);
    // The pre-login id still grants nothing, and a made-up CSRF token is refused.
    assert_eq!(http.get("/ui/vips", Some(&waiting_cookie)).status, 303);
    assert_eq!(login(&waiting_cookie, &"0".repeat(64)).status, 403);
}

#[test]
fn every_state_changing_request_needs_the_sessions_csrf_token() {
    // Loopback without a token: no login, but sessions and CSRF all the same.
    let daemon = Daemon::start("csrf", None);
    let http = Http::new(daemon.address);
    let page = http.get("/ui/vips/web", None);
    assert_eq!(page.status, 200, "no login without a token on loopback");
    let cookie = page.session_cookie().expect("a session is opened anyway");
    let csrf = page.csrf();
    let other = http.get("/ui/vips/web", None);
    let other_csrf = other.csrf();
    assert_ne!(csrf, other_csrf);
    let revision = daemon.revision();

    let drain = "/ui/vips/web/state";
    let change = ("change", "drain 198.18.100.2");
    let refused = [
        http.post(drain, Some(&cookie), &[change]),
        http.post(drain, Some(&cookie), &[change, ("csrf", "0000")]),
        http.post(drain, Some(&cookie), &[change, ("csrf", &other_csrf)]),
        http.post(drain, None, &[change, ("csrf", &csrf)]),
        http.post("/ui/vips/web/delete", Some(&cookie), &[]),
        http.post(
            "/ui/vips/new",
            Some(&cookie),
            &[("name", "x"), ("address", "203.0.113.40")],
        ),
        http.post("/ui/vips/web/edit", Some(&cookie), &[("name", "web")]),
        http.post("/ui/revisions/rollback", Some(&cookie), &[("to", "1")]),
        http.post("/ui/logout", Some(&cookie), &[]),
    ];
    for (i, reply) in refused.iter().enumerate() {
        assert_eq!(
            reply.status, 403,
            "request {i} was not refused: {}",
            reply.body
        );
    }
    assert_eq!(daemon.revision(), revision, "nothing was applied");
    assert_eq!(
        daemon.backend_state("web", "198.18.100.2"),
        tula_config::BackendState::Active
    );

    // With the session's token: first the review (nothing applied), then Apply.
    let base = revision.to_string();
    let review = http.post(drain, Some(&cookie), &[change, ("csrf", &csrf), ("revision", &base)]);
    assert_eq!(review.status, 200, "{}", review.body);
    assert!(
        review
            .body
            .contains("~ vips[web].backends[198.18.100.2].state: active -&gt; drain"),
        "{}",
        review.body
    );
    assert_eq!(daemon.revision(), revision, "a review applies nothing");
    let drained = http.post(
        drain,
        Some(&cookie),
        &[change, ("csrf", &csrf), ("revision", &base), ("confirm", "1")],
    );
    assert_eq!(drained.status, 303, "{}", drained.body);
    assert_eq!(
        drained.location.as_deref(),
        Some(format!("/ui/vips/web?applied={}#backends", revision + 1).as_str())
    );
    assert_eq!(
        daemon.backend_state("web", "198.18.100.2"),
        tula_config::BackendState::Drain
    );
    let shown = http.get(drained.location.as_deref().unwrap(), Some(&cookie));
    assert!(shown.body.contains("Applied: revision"), "{}", shown.body);
    assert!(
        shown
            .body
            .contains("ui: drain vips[web].backends[198.18.100.2]"),
        "{}",
        shown.body
    );

    let active = http.post_with_header(
        drain,
        &cookie,
        &csrf,
        &[("change", "active 198.18.100.2"), ("confirm", "1")],
    );
    assert_eq!(active.status, 303, "{}", active.body);
    assert_eq!(
        daemon.backend_state("web", "198.18.100.2"),
        tula_config::BackendState::Active
    );
}

#[test]
fn the_form_shows_each_error_beside_its_field_and_applies_only_a_valid_vip() {
    let daemon = Daemon::start("form", None);
    let http = Http::new(daemon.address);
    let form_page = http.get("/ui/vips/new", None);
    assert_eq!(form_page.status, 200);
    let cookie = form_page.session_cookie().unwrap();
    let csrf = form_page.csrf();
    for needle in [
        "Layer 3 (IPIP Tunnel)",
        "Layer 2",
        "Cross-subnet support",
        "Save",
        "Add backend",
    ] {
        assert!(form_page.body.contains(needle), "the form lacks {needle:?}");
    }
    let revision = daemon.revision();

    let fields = |b0_address: &'static str, b1_port: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "api".to_string()),
            ("address", "203.0.113.11".to_string()),
            ("port", "443".to_string()),
            ("protocol", "tcp".to_string()),
            ("mode", "dsr".to_string()),
            ("dsr_type", "l3-ipip".to_string()),
            ("scheduler", "maglev".to_string()),
            ("hc_type", "tcp".to_string()),
            ("hc_port", String::new()),
            ("hc_interval", "2s".to_string()),
            ("hc_timeout", "1s".to_string()),
            ("hc_rise", "2".to_string()),
            ("hc_fall", "3".to_string()),
            ("b0_address", b0_address.to_string()),
            ("b0_port", String::new()),
            ("b0_weight", "1".to_string()),
            ("b0_state", "active".to_string()),
            ("b1_address", "198.18.100.7".to_string()),
            ("b1_port", b1_port.to_string()),
            ("b1_weight", "1".to_string()),
            ("b1_state", "active".to_string()),
        ]
    };
    let as_refs =
        |fields: &[(&'static str, String)]| -> Vec<(&'static str, String)> { fields.to_vec() };

    // A bad address and a port DSR cannot serve: both shown at their fields, nothing applied.
    let rejected = http.post_owned(
        "/ui/vips/new",
        Some(&cookie),
        &as_refs(&fields("198.18.100.300", "8443")),
    );
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    assert_eq!(
        rejected.element_text("e-b0_address").as_deref(),
        Some("&quot;198.18.100.300&quot; is not an IP address")
    );
    assert_eq!(
        rejected.element_text("e-b1_port").as_deref(),
        Some("8443 differs from the VIP port 443; DSR cannot translate ports")
    );
    assert!(
        rejected
            .body
            .contains("id=\"f-b1_port\" name=\"b1_port\" value=\"8443\""),
        "the form keeps what was typed"
    );
    assert!(rejected.body.contains("aria-describedby=\"e-b1_port\""));
    assert_eq!(
        rejected.element_text("unchanged-revision"),
        Some(revision.to_string())
    );
    assert_eq!(daemon.revision(), revision, "nothing was applied");
    assert!(daemon.control.running().1.vip("api").is_none());

    // Fixed: Save shows the review (nothing applied yet), Apply applies it as one new revision.
    let review = http.post_owned(
        "/ui/vips/new",
        Some(&cookie),
        &as_refs(&fields("198.18.100.6", "")),
    );
    assert_eq!(review.status, 200, "{}", review.body);
    assert!(review.body.contains("<code>+ vips[api]</code>"), "{}", review.body);
    assert!(review.body.contains("id=\"apply\""), "{}", review.body);
    assert_eq!(daemon.revision(), revision, "a review applies nothing");
    let mut confirmed = as_refs(&fields("198.18.100.6", ""));
    confirmed.push(("revision", revision.to_string()));
    confirmed.push(("confirm", "1".to_string()));
    let applied = http.post_owned("/ui/vips/new", Some(&cookie), &confirmed);
    assert_eq!(applied.status, 303, "{}", applied.body);
    assert_eq!(daemon.revision(), revision + 1);
    let location = applied.location.unwrap();
    assert_eq!(location, format!("/ui/vips/api?applied={}", revision + 1));
    let vip = daemon.control.running().1.vip("api").cloned().unwrap();
    assert_eq!(vip.port, 443);
    assert_eq!(vip.backends.len(), 2);

    let detail = http.get(&location, Some(&cookie));
    assert_eq!(detail.status, 200);
    assert_eq!(
        detail.element_text("applied-revision"),
        Some((revision + 1).to_string())
    );
    assert!(
        detail.body.contains("Check that replies bypass the load balancer"),
        "{}",
        detail.body
    );
    assert!(detail.body.contains("href=\"/ui/vips/api/setup\""), "{}", detail.body);
    // Backend setup has its own page, so the VIP's page stays small.
    assert!(!detail.body.contains("tula decap setup"), "{}", detail.body);
    let setup = http.get("/ui/vips/api/setup", Some(&cookie));
    assert_eq!(setup.status, 200);
    for needle in [
        "Backend setup",
        "tula decap setup --vip 203.0.113.11 --mss-clamp=1440",
        "tula decap setup --method xdp --vip 203.0.113.11 --mss-clamp=1440",
        "ip link show tunl0 &gt;/dev/null 2&gt;&amp;1 || ip tunnel add tunl0 mode ipip local 198.18.100.6",
        "sysctl -w net.ipv4.conf.tunl0.rp_filter=0",
        "/etc/modules-load.d/tula-ipip.conf",
        // lb0 is a veth with MTU 1500: the tunnel carries 1480, the MSS is 1440.
        "tunnel-mtu\">1480<",
        "maxseg size set 1440",
        "tula decap verify --vip 203.0.113.11",
    ] {
        assert!(
            setup.body.contains(needle),
            "the setup page lacks {needle:?}"
        );
    }

    // The same name again: refused at the name field.
    let again = http.post_owned(
        "/ui/vips/new",
        Some(&cookie),
        &as_refs(&fields("198.18.100.6", "")),
    );
    assert_eq!(again.status, 422);
    assert_eq!(
        again.element_text("e-name").as_deref(),
        Some("VIP &quot;api&quot; already exists")
    );

    // The live JSON the list polls.
    let status = http.get("/ui/status.json", Some(&cookie));
    let json: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(json["vips"]["api"]["total"], 2);
    assert_eq!(json["vips"]["api"]["up"], 2);
    assert!(json["interfaces"]["lb0"]["tx_packets"].is_u64(), "{json}");
    assert!(json["time_ms"].as_u64().unwrap() > 0);
}

#[test]
fn the_form_takes_an_ipv6_vip_and_the_pages_show_it_bracketed() {
    let daemon = Daemon::start("ipv6", None);
    // The test's thread is in the daemon's namespace: an IPv6 path toward the backends.
    for args in [
        &["-6", "addr", "add", "2001:db8:0:1::1/64", "dev", "lb0", "nodad"][..],
        &["-6", "route", "add", "2001:db8:100::/64", "via", "2001:db8:0:1::2"][..],
    ] {
        let status = std::process::Command::new("ip").args(args).status().unwrap();
        assert!(status.success(), "ip {args:?}");
    }
    let http = Http::new(daemon.address);
    let form_page = http.get("/ui/vips/new", None);
    let cookie = form_page.session_cookie().unwrap();
    let revision = daemon.revision();
    let fields = |b1_address: &str| -> Vec<(&'static str, String)> {
        [
            ("csrf", form_page.csrf()),
            ("name", "web6".into()),
            ("address", "2001:db8:113::10".into()),
            ("port", "80".into()),
            ("protocol", "tcp".into()),
            ("mode", "dsr".into()),
            ("dsr_type", "l3-ipip".into()),
            ("scheduler", "maglev".into()),
            ("hc_type", "none".into()),
            ("hc_interval", "2s".into()),
            ("hc_timeout", "1s".into()),
            ("hc_rise", "2".into()),
            ("hc_fall", "3".into()),
            ("b0_address", "2001:db8:100::2".into()),
            ("b0_port", String::new()),
            ("b0_weight", "1".into()),
            ("b0_state", "active".into()),
            ("b1_address", b1_address.into()),
            ("b1_port", String::new()),
            ("b1_weight", "1".into()),
            ("b1_state", "active".into()),
        ]
        .into_iter()
        .collect()
    };

    // An IPv4 backend cannot take an IPv6 VIP's packets: refused at its field.
    let rejected = http.post_owned("/ui/vips/new", Some(&cookie), &fields("198.18.100.7"));
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    let error = rejected.element_text("e-b1_address").unwrap_or_default();
    assert!(error.contains("IPv6 VIPs need IPv6 backends"), "{error:?}\n{}", rejected.body);
    assert_eq!(daemon.revision(), revision, "nothing was applied");

    let mut confirmed = fields("2001:db8:100::3");
    let review = http.post_owned("/ui/vips/new", Some(&cookie), &confirmed);
    assert_eq!(review.status, 200, "{}", review.body);
    assert!(review.body.contains("<code>+ vips[web6]</code>"), "{}", review.body);
    confirmed.push(("revision", revision.to_string()));
    confirmed.push(("confirm", "1".into()));
    let applied = http.post_owned("/ui/vips/new", Some(&cookie), &confirmed);
    assert_eq!(applied.status, 303, "{}", applied.body);
    let vip = daemon.control.running().1.vip("web6").cloned().unwrap();
    assert_eq!(vip.address, "2001:db8:113::10".parse::<std::net::IpAddr>().unwrap());

    let detail = http.get(&applied.location.unwrap(), Some(&cookie));
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("[2001:db8:113::10]:80/tcp"), "{}", detail.body);
    for backend in ["2001:db8:100::2", "2001:db8:100::3"] {
        assert!(!detail.backend_row(backend).is_empty(), "no row for {backend}");
    }
    // Its backend setup: IP6IP6 through lb0 (MTU 1500): tunnel 1460, MSS 1400.
    let setup = http.get("/ui/vips/web6/setup", Some(&cookie));
    assert_eq!(setup.status, 200);
    for needle in [
        "tula decap setup --vip 2001:db8:113::10 --mss-clamp6=1400",
        "ip6tnl0",
        "tunnel-mtu\">1460<",
        "tula decap verify --vip 2001:db8:113::10",
    ] {
        assert!(setup.body.contains(needle), "the setup page lacks {needle:?}: {}", setup.body);
    }
    let list = http.get("/ui/vips?q=web6", Some(&cookie));
    assert!(list.body.contains("[2001:db8:113::10]:80/tcp"), "{}", list.body);

    // The edit form shows the IPv6 addresses back, and saving it unchanged changes nothing.
    let edit = http.get("/ui/vips/web6/edit", Some(&cookie));
    let again = form_fields(&edit);
    assert!(again.contains(&("address", "2001:db8:113::10".into())), "{again:?}");
    assert!(again.contains(&("b1_address", "2001:db8:100::3".into())), "{again:?}");
    let unchanged = http.post_owned("/ui/vips/web6/edit", Some(&cookie), &again);
    assert!(unchanged.body.contains("No changes"), "{}", unchanged.body);
}

#[test]
fn the_documented_addresses_lead_to_the_vip_list_and_the_hints_name_real_commands() {
    let daemon = Daemon::start("paths", None);
    let http = Http::new(daemon.address);
    for path in ["/", "/ui", "/ui/"] {
        let reply = http.get(path, None);
        assert_eq!(reply.status, 303, "{path}: {}", reply.body);
        assert_eq!(reply.location.as_deref(), Some("/ui/vips"), "{path}");
    }
    let revisions = http.get("/ui/revisions", None);
    assert_eq!(revisions.status, 200);
    // The CLI's subcommands (crates/tula/src/cli): `tula config history|rollback`.
    for command in ["tula config history", "tula config rollback N"] {
        assert!(revisions.body.contains(command), "{}", revisions.body);
    }
    assert!(!revisions.body.contains("tula revisions"));
}

#[test]
fn the_node_page_shows_service_bgp_and_cluster_state() {
    let daemon = Daemon::start("node", None);
    let http = Http::new(daemon.address);
    let list = http.get("/ui/vips", None);
    assert!(list.body.contains("href=\"/ui/node\""), "the navigation leads to the Node page");
    let node = http.get("/ui/node", None);
    assert_eq!(node.status, 200, "{}", node.body);
    // A daemon without `--bgp` and without `[cluster]` says so, and names the commands.
    for expected in ["in service", "BGP is off on this node", "not in a cluster", "tula node drain", "tula node resume"] {
        assert!(node.body.contains(expected), "the Node page lacks {expected:?}: {}", node.body);
    }
}

#[test]
fn the_list_marks_a_running_config_that_differs_from_the_saved_file() {
    let daemon = Daemon::start("saved", None);
    let http = Http::new(daemon.address);
    let list = http.get("/ui/vips", None);
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("Running config differs from saved"));
    assert!(!list.body.contains("differs from saved</span>"));
    let cookie = list.session_cookie().unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&http.get("/ui/status.json", Some(&cookie)).body).unwrap();
    assert_eq!(status["saved_differs"], false);

    // Someone edits the file by hand and does not apply it.
    let path = daemon.state.join("tula.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut saved = tula_config::Config::from_toml_str(&text).unwrap();
    saved.vips[0].backends[1].weight = 5;
    std::fs::write(&path, saved.to_toml_string()).unwrap();

    let list = http.get("/ui/vips", Some(&cookie));
    assert!(
        list.body.contains("Running config differs from saved"),
        "{}",
        list.body
    );
    assert!(
        list.body
            .contains("~ vips[web].backends[198.18.100.3].weight: 1 -&gt; 5"),
        "{}",
        list.body
    );
    assert!(
        list.body.contains("differs from saved</span>"),
        "the web row is marked"
    );
    let status: serde_json::Value =
        serde_json::from_str(&http.get("/ui/status.json", Some(&cookie)).body).unwrap();
    assert_eq!(status["saved_differs"], true);
}

#[test]
fn the_detail_page_shows_each_backends_health_and_its_recent_changes() {
    // The next hop swallows the SYNs to these backends: a fast check takes them down.
    let vips = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
health_check = { type = "tcp", interval = "200ms", timeout = "100ms", rise = 1, fall = 2 }
backends = [{ address = "198.18.100.2" }, { address = "198.18.100.3" }]

[[vip]]
name = "quiet"
address = "203.0.113.11"
port = 80
health_check = { type = "none" }
backends = [{ address = "198.18.100.4" }]
"#;
    let daemon = Daemon::start_with("health", None, vips);
    let http = Http::new(daemon.address);
    let list = http.get("/ui/vips", None);
    let cookie = list.session_cookie().unwrap();
    let started = std::time::Instant::now();
    while daemon.control.status().unwrap()[0]
        .backends
        .iter()
        .any(|b| b.healthy)
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the silent backends never went down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let page = http.get("/ui/vips/web", Some(&cookie));
    assert_eq!(page.status, 200);
    for address in ["198.18.100.2", "198.18.100.3"] {
        let row = page.backend_row(address);
        for needle in [
            ">unhealthy</span>",
            "down since <time datetime=\"",
            "last check failed: no answer within 100ms",
            "up → <strong>down</strong>: fail, no answer within 100ms (",
        ] {
            assert!(
                row.contains(needle),
                "{address}'s row lacks {needle:?}: {row}"
            );
        }
    }
    assert!(
        page.body
            .contains("No backend can take new flows: they are dropped."),
        "{}",
        page.body
    );

    let quiet = http.get("/ui/vips/quiet", Some(&cookie));
    assert!(quiet.body.contains("not checked"), "{}", quiet.body);
    assert!(quiet.body.contains(">healthy</span>"), "{}", quiet.body);
    assert!(!quiet.body.contains("id=\"new-flows\""), "{}", quiet.body);
}

#[test]
fn a_drain_shows_where_it_stands_and_flows_are_not_table_entries() {
    let vips = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{ address = "198.18.100.2", state = "drain" }, { address = "198.18.100.3" }]
"#;
    let daemon = Daemon::start_with("drain", None, vips);
    let http = Http::new(daemon.address);
    let cookie = http.get("/ui/vips", None).session_cookie().unwrap();
    // Before the first sample of the connection table, nobody can say.
    let page = http.get("/ui/vips/web", Some(&cookie));
    assert!(page.backend_row("198.18.100.2").contains("draining (flows not sampled yet)"), "{}", page.body);
    // Sampled: no flow ever reached it, so the drain is over.
    daemon.control.sample_flows().unwrap();
    let page = http.get("/ui/vips/web", Some(&cookie));
    let drained = page.backend_row("198.18.100.2");
    assert!(drained.contains("data-live=\"drain\"") && drained.contains("drained — no flows seen"), "{drained}");
    assert!(!page.backend_row("198.18.100.3").contains("data-live=\"drain\""), "an active backend has no drain note");
    for header in ["Active flows", "last 60 s", "Table entries"] {
        assert!(page.body.contains(header), "the VIP page lacks {header:?}");
    }
    let list = http.get("/ui/vips", Some(&cookie));
    for cell in ["data-live=\"active_flows\"", "data-live=\"table_entries\"", "Table entries"] {
        assert!(list.body.contains(cell), "the VIP list lacks {cell:?}");
    }
    // The pages' script reads the same, for the VIPs it names only.
    let live = http.get("/ui/status.json?vips=web", Some(&cookie));
    let live: serde_json::Value = serde_json::from_str(&live.body).unwrap();
    let backend = &live["vips"]["web"]["backends"]["198.18.100.2"];
    assert_eq!(backend["drain"]["text"], "drained — no flows seen", "{live:#}");
    assert_eq!((backend["active_flows"].as_u64(), backend["table_entries"].as_u64()), (Some(0), Some(0)));
    assert!(live["vips"]["web"]["backends"]["198.18.100.3"]["drain"].is_null());
    let none: serde_json::Value = serde_json::from_str(&http.get("/ui/status.json?vips=other", Some(&cookie)).body).unwrap();
    assert_eq!(none["vips"], serde_json::json!({}), "only the VIPs asked for");
}

/// The fields of the edit form of `vip` as the page renders them (hidden ones included).
fn form_fields(page: &Reply) -> Vec<(&'static str, String)> {
    let mut fields = Vec::new();
    let mut rest = page.body.as_str();
    while let Some(at) = rest.find("<input ") {
        rest = &rest[at..];
        let end = rest.find('>').unwrap();
        let tag = &rest[..end];
        let attr = |name: &str| {
            let marker = format!(" {name}=\"");
            tag.find(&marker).map(|i| {
                let start = i + marker.len();
                let stop = tag[start..].find('"').unwrap() + start;
                tag[start..stop].replace("&quot;", "\"").replace("&amp;", "&")
            })
        };
        if let (Some(name), Some(value)) = (attr("name"), attr("value")) {
            if !tag.contains("type=\"radio\"") || tag.contains(" checked") {
                fields.push((&*Box::leak(name.into_boxed_str()), value));
            }
        }
        rest = &rest[end..];
    }
    // Selects: their selected option.
    let mut rest = page.body.as_str();
    while let Some(at) = rest.find("<select ") {
        rest = &rest[at..];
        let name_at = rest.find("name=\"").unwrap() + 6;
        let name = &rest[name_at..name_at + rest[name_at..].find('"').unwrap()];
        let end = rest.find("</select>").unwrap();
        let body = &rest[..end];
        if let Some(selected) = body.find(" selected") {
            let option = body[..selected].rfind("value=\"").unwrap() + 7;
            let value = &body[option..option + body[option..].find('"').unwrap()];
            fields.push((&*Box::leak(name.to_string().into_boxed_str()), value.to_string()));
        }
        rest = &rest[end..];
    }
    fields
}

fn set(fields: &mut Vec<(&'static str, String)>, name: &'static str, value: &str) {
    fields.retain(|(n, _)| *n != name);
    fields.push((name, value.to_string()));
}

#[test]
fn save_reviews_the_change_with_its_warnings_and_apply_applies_it() {
    let daemon = Daemon::start("review", None);
    let http = Http::new(daemon.address);
    let edit = http.get("/ui/vips/web/edit", None);
    let cookie = edit.session_cookie().unwrap();
    let revision = daemon.revision();
    let mut fields = form_fields(&edit);
    assert!(fields.contains(&("revision", revision.to_string())), "the form carries its revision: {fields:?}");

    // Unchanged: "No changes", nothing to apply.
    let unchanged = http.post_owned("/ui/vips/web/edit", Some(&cookie), &fields);
    assert_eq!(unchanged.status, 200, "{}", unchanged.body);
    assert!(unchanged.body.contains("id=\"form-notice\""), "{}", unchanged.body);
    assert!(unchanged.body.contains("No changes"), "{}", unchanged.body);

    // Without a script, Add backend and Remove send the form back with a row more or less.
    let mut add = fields.clone();
    add.push(("add_row", "1".into()));
    let added = http.post_owned("/ui/vips/web/edit", Some(&cookie), &add);
    assert!(added.body.contains("id=\"f-b2_address\""), "a third row: {}", added.body);
    let mut remove = fields.clone();
    remove.push(("remove_row", "1".into()));
    let removed = http.post_owned("/ui/vips/web/edit", Some(&cookie), &remove);
    assert!(!removed.body.contains("id=\"f-b1_address\""), "{}", removed.body);
    assert!(removed.body.contains("id=\"f-b0_address\""));
    assert_eq!(daemon.revision(), revision, "none of this applied anything");

    // Every backend removed: the review warns that the VIP drops everything.
    let mut empty: Vec<_> = fields
        .iter()
        .filter(|(n, _)| !n.starts_with('b') || !n.contains('_'))
        .cloned()
        .collect();
    set(&mut empty, "hc_type", "tcp");
    let review = http.post_owned("/ui/vips/web/edit", Some(&cookie), &empty);
    assert_eq!(review.status, 200, "{}", review.body);
    assert!(
        review
            .body
            .contains("VIP web has no backends: every packet to 203.0.113.10:80/tcp is dropped"),
        "{}",
        review.body
    );
    assert!(review.body.contains("- vips[web].backends[198.18.100.2]"), "{}", review.body);
    assert_eq!(daemon.revision(), revision);

    // A weight change: reviewed, then applied with Apply.
    set(&mut fields, "b1_weight", "5");
    let review = http.post_owned("/ui/vips/web/edit", Some(&cookie), &fields);
    assert!(
        review
            .body
            .contains("~ vips[web].backends[198.18.100.3].weight: 1 -&gt; 5"),
        "{}",
        review.body
    );
    assert!(!review.body.contains("id=\"review-warnings\""), "{}", review.body);
    let mut confirm = fields.clone();
    confirm.push(("confirm", "1".into()));
    let applied = http.post_owned("/ui/vips/web/edit", Some(&cookie), &confirm);
    assert_eq!(applied.status, 303, "{}", applied.body);
    assert_eq!(daemon.revision(), revision + 1);
    assert_eq!(daemon.control.running().1.vip("web").unwrap().backends[1].weight, 5);
}

#[test]
fn a_change_based_on_an_old_revision_is_shown_as_a_conflict_and_not_applied() {
    let daemon = Daemon::start("conflict", None);
    let http = Http::new(daemon.address);
    let edit = http.get("/ui/vips/web/edit", None);
    let cookie = edit.session_cookie().unwrap();
    let base = daemon.revision();
    let mut fields = form_fields(&edit);
    set(&mut fields, "b0_weight", "7");

    // Someone else applies a change meanwhile.
    let mut other = daemon.control.running().1;
    other.vips[0].backends[1].weight = 3;
    daemon.control.apply(other, "cli: set weight").unwrap();

    for confirm in [false, true] {
        let mut sent = fields.clone();
        if confirm {
            sent.push(("confirm", "1".into()));
        }
        let reply = http.post_owned("/ui/vips/web/edit", Some(&cookie), &sent);
        assert_eq!(reply.status, 409, "{}", reply.body);
        assert!(reply.body.contains("id=\"conflict\""), "{}", reply.body);
        assert_eq!(reply.element_text("conflict-base"), Some(base.to_string()));
        assert_eq!(reply.element_text("conflict-running"), Some((base + 1).to_string()));
        assert!(reply.body.contains("cli: set weight"), "what changed is named: {}", reply.body);
        assert!(
            reply.body.contains("~ vips[web].backends[198.18.100.3].weight: 1 -&gt; 3"),
            "{}",
            reply.body
        );
        assert!(reply.body.contains("id=\"reload\""));
    }
    let running = daemon.control.running().1;
    assert_eq!(daemon.revision(), base + 1, "nothing was overwritten");
    assert_eq!(running.vips[0].backends[0].weight, 1);
    assert_eq!(running.vips[0].backends[1].weight, 3);
}

#[test]
fn revisions_compare_side_by_side_and_roll_back_after_review() {
    let daemon = Daemon::start("rollback", None);
    let http = Http::new(daemon.address);
    let first = daemon.revision();
    let mut config = daemon.control.running().1;
    config.vips[0].backends[1].weight = 9;
    daemon.control.apply(config, "test: weight 9").unwrap();

    let list = http.get("/ui/revisions", None);
    let cookie = list.session_cookie().unwrap();
    assert!(list.body.contains("aria-label=\"Roll back to revision"), "{}", list.body);
    let diff = http.get(
        &format!("/ui/revisions/diff?from={first}&to={}", first + 1),
        Some(&cookie),
    );
    assert_eq!(diff.status, 200, "{}", diff.body);
    let changed = diff
        .body
        .find("class=\"line-changed\"")
        .map(|at| &diff.body[at..at + diff.body[at..].find("</tr>").unwrap()])
        .unwrap_or_else(|| panic!("no changed line: {}", diff.body));
    assert!(changed.contains("weight = 1") && changed.contains("weight = 9"), "{changed}");

    let csrf = list.csrf();
    let base = (first + 1).to_string();
    let to = first.to_string();
    let review = http.post(
        "/ui/revisions/rollback",
        Some(&cookie),
        &[("csrf", &csrf), ("revision", &base), ("to", &to)],
    );
    assert_eq!(review.status, 200, "{}", review.body);
    assert!(
        review
            .body
            .contains("~ vips[web].backends[198.18.100.3].weight: 9 -&gt; 1"),
        "{}",
        review.body
    );
    assert_eq!(daemon.revision(), first + 1, "a review applies nothing");
    let applied = http.post(
        "/ui/revisions/rollback",
        Some(&cookie),
        &[("csrf", &csrf), ("revision", &base), ("to", &to), ("confirm", "1")],
    );
    assert_eq!(applied.status, 303, "{}", applied.body);
    assert_eq!(
        applied.location.as_deref(),
        Some(format!("/ui/revisions?applied={}", first + 2).as_str())
    );
    assert_eq!(daemon.control.running().1.vips[0].backends[1].weight, 1);
}

#[test]
fn the_list_searches_filters_and_pages_at_scale() {
    let mut vips = String::new();
    for i in 0..60 {
        // Layer 2 backends sit on the balancer's own segment.
        let (dsr, subnet) = if i % 2 == 0 { ("l3-ipip", 100) } else { ("l2", 0) };
        vips.push_str(&format!(
            "[[vip]]\nname = \"v{i:02}\"\naddress = \"203.0.113.{}\"\nport = 80\ndsr_type = \"{dsr}\"\nhealth_check = {{ type = \"none\" }}\nbackends = [{{ address = \"198.18.{subnet}.{}\" }}]\n\n",
            i + 1,
            i + 10
        ));
    }
    vips.push_str("[[vip]]\nname = \"empty\"\naddress = \"203.0.113.200\"\nport = 80\nbackends = []\n");
    let daemon = Daemon::start_with("scale", None, &vips);
    let http = Http::new(daemon.address);
    let first = http.get("/ui/vips", None);
    let cookie = first.session_cookie().unwrap();
    let rows = |reply: &Reply| reply.body.matches("<tr data-vip=").count();
    assert_eq!(rows(&first), 50, "a page of 50");
    assert!(first.body.contains("Page 1 of 2"), "{}", first.body);
    assert!(first.body.contains("rel=\"next\" href=\"/ui/vips?page=2\""), "{}", first.body);
    let second = http.get("/ui/vips?page=2", Some(&cookie));
    assert_eq!(rows(&second), 11);
    // A VIP without backends is red, named as such; the others are green.
    assert!(second.body.contains("<tr data-vip=\"empty\" data-health=\"down\">"), "{}", second.body);
    assert!(second.body.contains("no backends"));
    assert!(first.body.contains("<tr data-vip=\"v00\" data-health=\"up\">"));
    assert!(first.body.contains("class=\"badge health-up\""));
    let search = http.get("/ui/vips?q=v1", Some(&cookie));
    assert_eq!(rows(&search), 10, "v10..v19");
    let layer2 = http.get("/ui/vips?dsr=l2", Some(&cookie));
    assert_eq!(rows(&layer2), 30);
    let down = http.get("/ui/vips?health=down", Some(&cookie));
    assert_eq!(rows(&down), 1);
    assert!(down.body.contains("data-vip=\"empty\""));
    let none = http.get("/ui/vips?q=nothing-like-this", Some(&cookie));
    assert!(none.body.contains("No VIP matches."), "{}", none.body);
}

/// A VIP's page stays under 100 kB with 100 backends: the rows carry only what
/// differs per backend, and backend setup (whose commands name every VIP a
/// backend serves) is a page of its own.
#[test]
fn a_vip_page_with_a_hundred_backends_stays_small() {
    let backends: Vec<String> =
        (2..102).map(|i| format!("{{ address = \"198.18.100.{i}\" }}")).collect();
    let vip = format!(
        "[[vip]]\nname = \"big\"\naddress = \"203.0.113.50\"\nport = 80\nhealth_check = {{ type = \"none\" }}\nbackends = [{}]\n",
        backends.join(", ")
    );
    let daemon = Daemon::start_with("big", None, &vip);
    let http = Http::new(daemon.address);
    let first = http.get("/ui/vips", None);
    let cookie = first.session_cookie().unwrap();
    let page = http.get("/ui/vips/big", Some(&cookie));
    assert_eq!(page.status, 200);
    let rows: Vec<&str> = page.body.split("<tr data-backend=").skip(1).collect();
    assert_eq!(rows.len(), 100);
    let row = rows[0].split("</tr>").next().unwrap();
    assert!(row.len() < 600, "{} bytes a row: {row}", row.len());
    assert!(page.body.len() < 100_000, "{} bytes", page.body.len());
    // Still one button per other state, each naming its backend, all in the one form.
    assert!(row.contains("<button name=\"change\" value=\"drain 198.18.100.2\" aria-label=\"Drain backend 198.18.100.2\">"), "{row}");
    assert_eq!(page.body.matches("name=\"csrf\"").count(), 2, "the Remove form's and the backends' form's");
    let setup = http.get("/ui/vips/big/setup?backend=198.18.100.101", Some(&cookie));
    assert_eq!(setup.status, 200);
    assert!(setup.body.contains("ip link show tunl0 &gt;/dev/null 2&gt;&amp;1 || ip tunnel add tunl0 mode ipip local 198.18.100.101"), "{}", setup.body);
}

#[test]
fn typed_values_come_back_escaped_and_assets_go_gzipped() {
    let daemon = Daemon::start("escape", None);
    let http = Http::new(daemon.address);
    let edit = http.get("/ui/vips/web/edit", None);
    let cookie = edit.session_cookie().unwrap();
    let mut fields = form_fields(&edit);
    set(&mut fields, "address", "\"><script>alert(1)</script>");
    let rejected = http.post_owned("/ui/vips/web/edit", Some(&cookie), &fields);
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    assert!(!rejected.body.contains("<script>alert"), "{}", rejected.body);
    assert!(rejected.body.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));

    for path in ["/ui/static/ui.css", "/ui/static/ui.js"] {
        let reply = http.get_gzip(path);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding").as_deref(), Some("gzip"), "{path}");
    }
}

/// One HTTP reply: status, redirect target, cookies set, body.
struct Reply {
    status: u16,
    location: Option<String>,
    set_cookie: Vec<String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    /// The VIP page's table row of backend `address`.
    fn backend_row(&self, address: &str) -> String {
        let start = self
            .body
            .find(&format!("<tr data-backend=\"{address}\">"))
            .unwrap_or_else(|| panic!("no row for {address}"));
        let end = self.body[start..].find("</tr>").unwrap() + start;
        self.body[start..end].to_string()
    }

    /// `tula_session=ID` from Set-Cookie, if set to a value.
    fn session_cookie(&self) -> Option<String> {
        self.set_cookie
            .iter()
            .filter_map(|c| c.split(';').next())
            .find(|pair| pair.starts_with("tula_session=") && pair.len() > "tula_session=".len())
            .map(str::to_string)
    }

    fn cookie_attributes(&self) -> Vec<String> {
        self.set_cookie
            .iter()
            .find(|c| c.starts_with("tula_session="))
            .map(|c| c.split(';').skip(1).map(|a| a.trim().to_string()).collect())
            .unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no CSRF field in:\n{}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }

    /// The text inside the element with this id (up to the next tag).
    fn element_text(&self, id: &str) -> Option<String> {
        let marker = format!("id=\"{id}\"");
        let start = self.body.find(&marker)?;
        let open_end = self.body[start..].find('>')? + start + 1;
        let close = self.body[open_end..].find('<')? + open_end;
        Some(self.body[open_end..close].to_string())
    }
}

/// A blocking client that follows no redirects and keeps no cookies.
struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    fn new(address: SocketAddr) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Http {
            agent,
            base: format!("http://{address}"),
        }
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.send("GET", path, cookie, None, String::new())
    }

    /// A GET that accepts gzip; the body is left as it came.
    fn get_gzip(&self, path: &str) -> Reply {
        let request = ureq::http::Request::builder()
            .uri(format!("{}{path}", self.base))
            .header("Accept-Encoding", "gzip")
            .body(())
            .unwrap();
        let response = self.agent.run(request).unwrap();
        Reply {
            status: response.status().as_u16(),
            location: None,
            set_cookie: Vec::new(),
            headers: response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect(),
            body: String::new(),
        }
    }

    fn post(&self, path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Reply {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send("POST", path, cookie, None, body)
    }

    fn post_owned(&self, path: &str, cookie: Option<&str>, fields: &[(&str, String)]) -> Reply {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send("POST", path, cookie, None, body)
    }

    fn post_with_header(
        &self,
        path: &str,
        cookie: &str,
        csrf: &str,
        fields: &[(&str, &str)],
    ) -> Reply {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send("POST", path, Some(cookie), Some(csrf), body)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        csrf: Option<&str>,
        body: String,
    ) -> Reply {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        let sent = if body.is_empty() && method == "GET" {
            self.agent.run(request.body(()).unwrap())
        } else {
            self.agent.run(request.body(body).unwrap())
        };
        let mut response = sent.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let value = |name: &str| -> Vec<String> {
            headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        Reply {
            status: response.status().as_u16(),
            location: value("location").into_iter().next(),
            set_cookie: value("set-cookie"),
            body: response.body_mut().read_to_string().unwrap(),
            headers,
        }
    }
}

/// A namespace with the test topology, a Control started in it, and the API
/// (with the UI) served on loopback in it. Removed on drop.
struct Daemon {
    control: Arc<Control>,
    address: SocketAddr,
    pin_dir: PathBuf,
    state: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    _ns: Netns,
}

impl Daemon {
    fn start(name: &str, token: Option<&str>) -> Daemon {
        Daemon::start_with(name, token, WEB)
    }

    /// A daemon whose config has `vips`.
    fn start_with(name: &str, token: Option<&str>, vips: &str) -> Daemon {
        let pid = std::process::id();
        let ns = Netns::create(&format!("tui-{name}-{pid}")).expect("creating the test namespace");
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/tula-test-ui-{name}-{pid}"));
        let state = std::env::temp_dir().join(format!("tula-ui-test-{name}-{pid}"));
        let _ = std::fs::remove_dir_all(&pin_dir);
        let _ = std::fs::remove_dir_all(&state);
        // The test's thread lives in the namespace from here on.
        ns.enter().expect("entering the test namespace");
        tula_net::add_veth("lb0", "nh0", None).unwrap();
        tula_net::set_up("lb0").unwrap();
        tula_net::set_up("nh0").unwrap();
        tula_net::add_address("lb0", Ipv4Addr::new(198, 18, 0, 1).into(), 24).unwrap();
        let next_hop = Ipv4Addr::new(198, 18, 0, 2);
        tula_net::add_neighbour("lb0", next_hop, [0x02, 0, 0, 0, 0, 0x02]).unwrap();
        tula_net::add_route(Ipv4Addr::new(198, 18, 100, 0), 24, Some(next_hop), None).unwrap();

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the API socket");
        let address = listener.local_addr().unwrap();
        let token_line = token
            .map(|t| format!("token = \"{t}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "interfaces = [\"lb0\"]\npin_dir = \"{}\"\nring_size = 4093\nconn_table_size = 4096\n\
             max_vips = 64\nmax_backends = 256\n\n[api]\nlisten = \"{address}\"\n{token_line}{vips}",
            pin_dir.display()
        );
        let (control, runtime) = support::serve(listener, &text, &state, tula_ui::router);
        Daemon {
            control,
            address,
            pin_dir,
            state,
            runtime: Some(runtime),
            _ns: ns,
        }
    }

    fn revision(&self) -> u64 {
        self.control.running().0
    }

    fn backend_state(&self, vip: &str, address: &str) -> tula_config::BackendState {
        let config = self.control.running().1;
        let vip = config.vip(vip).unwrap();
        vip.backends
            .iter()
            .find(|b| b.address.to_string() == address)
            .unwrap()
            .state
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        if let Err(e) = self.control.unload() {
            eprintln!("unloading the test data plane: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
