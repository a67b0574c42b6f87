//! The REST API over a real TCP socket, served by a real Control whose data
//! plane is loaded in a private network namespace (one per test): every route,
//! authentication on and off, errors as JSON, metrics.
//!
//! Topology inside each namespace:
//!   lb0 (198.18.0.1/24, the balancer's interface) <-veth-> nh0
//!   198.18.0.2         next hop (permanent neighbour), routes 198.18.100.0/24
//!   198.18.100.0/24    the backends

mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tula_control::Control;
use tula_net::Netns;

const TOKEN: &str = "test-token-0123456789";
const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// One web VIP with two backends.
const WEB: &str = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{ address = "198.18.100.2" }, { address = "198.18.100.3" }]
"#;

#[test]
fn the_openapi_document_covers_every_route_and_no_other() {
    let document: Value =
        serde_json::from_str(tula_api::OPENAPI_DOCUMENT).expect("the OpenAPI document is JSON");
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = tula_api::routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(
        routed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes missing from the document"
    );
    assert_eq!(
        documented.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not routed"
    );
    // Every operation documents its errors with the shared schema.
    for (method, path) in &documented {
        let operation = &document["paths"][path][method.to_lowercase()];
        assert!(
            operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"]
                == "#/components/schemas/Error",
            "{method} {path}"
        );
    }
}

#[test]
fn every_route_answers_over_the_socket() {
    let daemon = Daemon::start("routes", Listen::Loopback, None, WEB);
    let mut api = daemon.client(None);

    let (status, document) = api.call("GET", "/api/openapi.json", &[], None);
    assert_eq!(status, 200);
    assert!(document["paths"]["/api/vips"].is_object());

    // VIPs.
    let (status, vips) = api.call("GET", "/api/vips", &[], None);
    assert_eq!(status, 200);
    assert_eq!(vips.as_array().unwrap().len(), 1);
    assert_eq!(vips[0]["name"], "web");
    let first_revision = daemon.revision();

    let new_vip = json!({"name": "api", "address": "203.0.113.11", "port": 443, "backends": [{"address": "198.18.100.7"}]});
    let (status, created) = api.call("POST", "/api/vips", &[], Some(new_vip.clone()));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["vip"]["name"], "api");
    assert_eq!(created["revision"]["number"], first_revision + 1);
    assert_eq!(created["revision"]["source"], "api: add vips[api]");
    assert_eq!(created["revision"]["summary"][0], "+ vips[api]");
    assert_eq!(daemon.running().vip("api").unwrap().port, 443);

    let (status, again) = api.call("POST", "/api/vips", &[], Some(new_vip));
    assert_eq!(
        (status, again["error"].as_str().unwrap()),
        (409, "VIP \"api\" already exists")
    );

    let (status, shown) = api.call("GET", "/api/vips/{name}", &["api"], None);
    assert_eq!(
        (status, shown["address"].as_str().unwrap()),
        (200, "203.0.113.11")
    );

    let replacement = json!({"name": "api", "address": "203.0.113.11", "port": 443, "scheduler": "source-hash",
                             "backends": [{"address": "198.18.100.7"}, {"address": "198.18.100.8"}]});
    let (status, replaced) = api.call("PUT", "/api/vips/{name}", &["api"], Some(replacement));
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["vip"]["scheduler"], "source-hash");
    assert_eq!(daemon.running().vip("api").unwrap().backends.len(), 2);

    let (status, patched) = api.call(
        "PATCH",
        "/api/vips/{name}",
        &["api"],
        Some(json!({"port": 8443})),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["vip"]["port"], 8443);
    assert_eq!(
        patched["vip"]["scheduler"], "source-hash",
        "a patch leaves other keys alone"
    );
    assert_eq!(daemon.running().vip("api").unwrap().port, 8443);

    // Backends.
    let (status, backends) = api.call("GET", "/api/vips/{name}/backends", &["web"], None);
    assert_eq!((status, backends.as_array().unwrap().len()), (200, 2));

    let (status, added) = api.call(
        "POST",
        "/api/vips/{name}/backends",
        &["web"],
        Some(json!({"address": "198.18.100.4", "weight": 2})),
    );
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["backend"]["weight"], 2);

    let (status, backend) = api.call(
        "GET",
        "/api/vips/{name}/backends/{address}",
        &["web", "198.18.100.4"],
        None,
    );
    assert_eq!((status, backend["weight"].as_u64()), (200, Some(2)));

    let (status, reweighted) = api.call(
        "PATCH",
        "/api/vips/{name}/backends/{address}",
        &["web", "198.18.100.4"],
        Some(json!({"weight": 5})),
    );
    assert_eq!(status, 200, "{reweighted}");
    assert_eq!(
        reweighted["revision"]["source"],
        "api: set vips[web].backends[198.18.100.4] weight=5"
    );
    assert_eq!(daemon.backend("web", "198.18.100.4").weight, 5);

    let (status, drained) = api.call(
        "POST",
        "/api/vips/{name}/backends/{address}/drain",
        &["web", "198.18.100.2"],
        None,
    );
    assert_eq!(status, 200, "{drained}");
    assert_eq!(drained["backend"]["state"], "drain");
    assert_eq!(
        drained["revision"]["source"],
        "api: drain vips[web].backends[198.18.100.2]"
    );
    assert_eq!(
        daemon.backend("web", "198.18.100.2").state,
        tula_config::BackendState::Drain
    );

    let (status, removed) = api.call(
        "DELETE",
        "/api/vips/{name}/backends/{address}",
        &["web", "198.18.100.4"],
        None,
    );
    assert_eq!(status, 200, "{removed}");
    assert!(daemon
        .running()
        .vip("web")
        .unwrap()
        .backends
        .iter()
        .all(|b| b.address.to_string() != "198.18.100.4"));

    let (status, removed) = api.call("DELETE", "/api/vips/{name}", &["api"], None);
    assert_eq!(status, 200, "{removed}");
    assert!(daemon.running().vip("api").is_none());

    // The whole config: read, diff, apply (TOML and JSON).
    let (status, config) = api.call("GET", "/api/config", &[], None);
    assert_eq!(status, 200);
    assert_eq!(config["revision"], daemon.revision());
    assert_eq!(config["config"]["vip"][0]["name"], "web");

    let reweighted = daemon.config_text(&WEB.replace(
        r#"{ address = "198.18.100.3" }"#,
        r#"{ address = "198.18.100.3", weight = 4 }"#,
    ));
    let (status, diff) = api.call_toml("POST", "/api/config/diff", &reweighted);
    assert_eq!(status, 200, "{diff}");
    let changes = diff["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["op"] == "~"
            && c["path"] == "vips[web].backends[198.18.100.3].weight"
            && c["after"] == "4"),
        "{diff}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["op"] == "~" && c["path"] == "vips[web].backends[198.18.100.2].state"),
        "the drain made above is undone by this file: {diff}"
    );

    let (status, applied) = api.call_toml(
        "PUT",
        "/api/config?source=apply%20-f%20web.toml",
        &reweighted,
    );
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["source"], "api: apply -f web.toml");
    assert_eq!(applied["number"], daemon.revision());
    assert_eq!(daemon.backend("web", "198.18.100.3").weight, 4);

    let mut as_json = daemon.running();
    as_json.vips[0].backends[0].weight = 7;
    let (status, applied) = api.call(
        "PUT",
        "/api/config",
        &[],
        Some(serde_json::to_value(&as_json).unwrap()),
    );
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["source"], "api: apply");
    assert_eq!(daemon.backend("web", "198.18.100.2").weight, 7);

    // Revisions.
    let (status, history) = api.call("GET", "/api/revisions", &[], None);
    assert_eq!(status, 200);
    let history = history.as_array().unwrap();
    assert_eq!(history.last().unwrap()["number"], daemon.revision());
    assert!(history
        .iter()
        .any(|r| r["source"] == "api: drain vips[web].backends[198.18.100.2]"));
    assert!(
        history[0]["time"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 time: {}",
        history[0]["time"]
    );

    let (status, first) = api.call(
        "GET",
        "/api/revisions/{number}",
        &[&first_revision.to_string()],
        None,
    );
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["revision"]["number"], first_revision);
    assert_eq!(
        first["config"]["vip"][0]["backends"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let (status, rolled_back) = api.call(
        "POST",
        "/api/revisions/{number}/rollback",
        &[&first_revision.to_string()],
        None,
    );
    assert_eq!(status, 200, "{rolled_back}");
    assert_eq!(
        rolled_back["source"],
        format!("rollback to {first_revision}")
    );
    assert_eq!(daemon.backend("web", "198.18.100.2").weight, 1);
    assert_eq!(
        daemon.backend("web", "198.18.100.2").state,
        tula_config::BackendState::Active
    );

    // What the data plane does.
    let (status, vip_status) = api.call("GET", "/api/status", &[], None);
    assert_eq!(status, 200);
    assert_eq!(vip_status[0]["name"], "web");
    assert_eq!(vip_status[0]["dsr_type"], "l3-ipip");
    let backend = &vip_status[0]["backends"][0];
    for key in [
        "address",
        "weight",
        "state",
        "healthy",
        "active_flows",
        "table_entries",
        "packets",
        "bytes",
    ] {
        assert!(
            !backend[key].is_null(),
            "status backend lacks {key}: {backend}"
        );
    }
    assert_eq!(vip_status[0]["new_flows"], "backends");
    assert!(backend.get("health").is_some(), "{backend}");
    // The typed model the CLI reads is what the daemon writes.
    let typed: Vec<tula_client::VipStatus> = serde_json::from_value(vip_status.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), vip_status);

    // Health: WEB's backends are checked (tcp, the default) from the start.
    let health = wait_for(Duration::from_secs(5), || {
        let (status, health) = api.call(
            "GET",
            "/api/vips/{name}/backends/{address}/health",
            &["web", "198.18.100.2"],
            None,
        );
        (status == 200).then_some(health)
    })
    .expect("the backend's health record never came");
    assert_eq!(health["vip"], "web");
    assert_eq!(health["address"], "198.18.100.2");
    assert_eq!(health["check"], "tcp");
    assert_eq!(health["state"], "up");
    humantime::parse_rfc3339(health["since"].as_str().unwrap()).expect("since is RFC 3339");
    assert!(
        health["history"].is_array() && health["counts"]["passed"].is_u64(),
        "{health}"
    );

    let (status, counters) = api.call("GET", "/api/counters", &[], None);
    assert_eq!(status, 200);
    for counter in tula_dataplane::Counter::ALL {
        assert!(
            counters[counter.name()].is_u64(),
            "counter {counter} missing from {counters}"
        );
    }

    // lb0's peer nh0 runs no XDP program: every XDP_TX frame would vanish.
    let (status, interfaces) = api.call("GET", "/api/interfaces", &[], None);
    assert_eq!(status, 200);
    assert_eq!(interfaces[0]["name"], "lb0");
    assert_eq!(interfaces[0]["xdp_mode"], "native");
    assert_eq!(interfaces[0]["veth_peer"]["name"], "nh0");
    assert_eq!(interfaces[0]["veth_peer"]["xdp_mode"], "none");
    assert!(
        interfaces[0]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("runs no XDP program")),
        "{interfaces}"
    );
    // The node: in service, announcing nothing without BGP; drain and resume.
    let (status, node) = api.call("GET", "/api/node", &[], None);
    assert_eq!(status, 200, "{node}");
    assert_eq!(node["in_service"], true);
    assert_eq!(node["bgp"], false);
    assert_eq!(node["vips"][0]["vip"], "web");
    assert_eq!(node["vips"][0]["announced"], false);
    let (status, drained) = api.call("POST", "/api/node/drain", &[], None);
    assert_eq!(status, 200, "{drained}");
    assert_eq!(drained["in_service"], false);
    assert_eq!(drained["vips"][0]["announced"], false);
    let (status, resumed) = api.call("POST", "/api/node/resume", &[], None);
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["in_service"], true);

    // A standalone node is in no cluster (crates/tula/tests/cluster_etcd_e2e.rs tests one that is).
    let (status, cluster) = api.call("GET", "/api/cluster", &[], None);
    assert_eq!(status, 404, "{cluster}");
    assert!(cluster["error"].as_str().unwrap().contains("no [cluster] section"), "{cluster}");

    let (status, metrics) = api.call_text("GET", "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tula_dataplane_packets_total{counter=\"lru_miss\"}"),
        "{metrics}"
    );

    let untested: Vec<String> = tula_api::routes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .filter(|route| !api.called.contains(route))
        .collect();
    assert!(
        untested.is_empty(),
        "routes this test did not call: {untested:?}"
    );
}

#[test]
fn errors_are_json_naming_the_object_and_the_field() {
    let daemon = Daemon::start("errors", Listen::Loopback, None, WEB);
    let mut api = daemon.client(None);
    let revision = daemon.revision();

    let (status, error) =
        api.call_raw("POST", "/api/vips", "application/json", "{\"name\": \"x\",");
    assert_eq!(status, 400);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not valid JSON: EOF while parsing"),
        "{error}"
    );

    let (status, error) = api.call(
        "POST",
        "/api/vips",
        &[],
        Some(json!({"name": "x", "address": "203.0.113.20", "port": "eighty"})),
    );
    assert_eq!(status, 400);
    assert_eq!(error["errors"][0]["path"], "port");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("at port: invalid type: string \"eighty\", expected u16"),
        "{error}"
    );

    let (status, error) = api.call(
        "POST",
        "/api/vips/{name}/backends",
        &["web"],
        Some(json!({"address": "198.18.100.9", "wieght": 3})),
    );
    assert_eq!(status, 400);
    assert_eq!(error["errors"][0]["path"], "wieght");
    assert!(
        error["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown field `wieght`"),
        "{error}"
    );

    let (status, error) = api.call("GET", "/api/vips/{name}", &["nope"], None);
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (404, "no VIP \"nope\"")
    );
    let (status, error) = api.call(
        "PATCH",
        "/api/vips/{name}",
        &["nope"],
        Some(json!({"port": 81})),
    );
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (404, "no VIP \"nope\"")
    );
    let (status, error) = api.call(
        "DELETE",
        "/api/vips/{name}/backends/{address}",
        &["web", "198.18.100.9"],
        None,
    );
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (404, "VIP \"web\" has no backend 198.18.100.9")
    );
    let (status, error) = api.call(
        "POST",
        "/api/vips/{name}/backends/{address}/drain",
        &["web", "not-an-ip"],
        None,
    );
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (400, "\"not-an-ip\" is not an IP address")
    );
    let (status, error) = api.call(
        "PUT",
        "/api/vips/{name}",
        &["web"],
        Some(json!({"name": "www", "address": "203.0.113.10"})),
    );
    assert_eq!(status, 400);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("a VIP's name cannot change"),
        "{error}"
    );

    // A change that does not validate: 422, every problem with its path, nothing applied.
    let (status, error) = api.call(
        "POST",
        "/api/vips/{name}/backends",
        &["web"],
        Some(json!({"address": "198.18.100.9", "port": 8080, "weight": 1001})),
    );
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"], "the config is invalid");
    let problems: Vec<(String, String)> = error["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        problems.contains(&(
            "vips[web].backends[2].port".into(),
            "8080 differs from the VIP port 80; DSR cannot translate ports".into()
        )),
        "{problems:?}"
    );
    assert!(
        problems.contains(&(
            "vips[web].backends[2].weight".into(),
            "1001 is out of range 0..=1000".into()
        )),
        "{problems:?}"
    );
    assert_eq!(daemon.revision(), revision, "nothing was applied");

    // TOML that does not decode: 400 with the path and line.
    let (status, error) = api.call_toml(
        "PUT",
        "/api/config",
        "[[vip]]\nname = \"web\"\naddress = \"203.0.113.10\"\nport = \"eighty\"\n",
    );
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["errors"][0]["path"], "vips[web].port");
    assert!(
        error["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("(line 4, column 8)"),
        "{error}"
    );

    // Routes and methods that do not exist.
    let (status, error) = api.call("GET", "/api/nothing", &[], None);
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (404, "no route GET /api/nothing")
    );
    let (status, error) = api.call("DELETE", "/api/status", &[], None);
    assert_eq!(status, 405);
    assert_eq!(
        error["error"],
        "DELETE is not allowed on /api/status (allowed: GET)"
    );

    let (status, error) = api.call("GET", "/api/revisions/{number}", &["999"], None);
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (404, "no revision 999")
    );
    let (status, error) = api.call(
        "POST",
        "/api/revisions/{number}/rollback",
        &["latest"],
        None,
    );
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (400, "\"latest\" is not a revision number")
    );
    assert_eq!(daemon.revision(), revision, "no error applied anything");
}

#[test]
fn a_token_is_required_off_loopback() {
    let daemon = Daemon::start("token", Listen::Veth, Some(TOKEN), WEB);
    assert!(!daemon.address.ip().is_loopback());

    let (status, error, headers) = daemon.tcp(None).call_with_headers("GET", "/api/status");
    assert_eq!(status, 401);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("this API requires a bearer token"),
        "{error}"
    );
    assert_eq!(headers.as_deref(), Some("Bearer realm=\"tula\""));

    let (status, error, _) = daemon
        .client(Some("test-token-0123456780"))
        .call_with_headers("GET", "/api/status");
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (401, "the bearer token does not match api.token")
    );

    // Unknown routes and the metrics are behind the token too.
    for path in ["/api/nothing", "/metrics"] {
        assert_eq!(daemon.tcp(None).call_with_headers("GET", path).0, 401, "{path}");
    }

    let mut api = daemon.client(Some(TOKEN));
    let (status, _) = api.call("GET", "/api/status", &[], None);
    assert_eq!(status, 200);
    let (status, text) = api.call_text("GET", "/metrics");
    assert_eq!(status, 200, "{text}");

    // The token never leaves the daemon, and sending the redacted form back keeps it.
    let (_, config) = api.call("GET", "/api/config", &[], None);
    assert_eq!(config["config"]["api"]["token"], "********");
    let (status, applied) = api.call("PUT", "/api/config", &[], Some(config["config"].clone()));
    assert_eq!(status, 200, "{applied}");
    assert_eq!(daemon.running().api.token.as_deref(), Some(TOKEN));
    let (status, _) = daemon
        .client(Some(TOKEN))
        .call("GET", "/api/status", &[], None);
    assert_eq!(status, 200);
}

/// The issue's scale through the API: a whole file of 1,000 VIPs with 100
/// backends each (3.5 MB of TOML) is one PUT, and what runs is that file.
#[test]
fn a_whole_config_of_1000_vips_with_100_backends_each_is_accepted() {
    const LARGE: &str =
        "ring_size = 257\nconn_table_size = 4096\nmax_vips = 1024\nmax_backends = 102400\n";
    let daemon = Daemon::start_sized("large", Listen::Loopback, None, "", LARGE);
    let mut vips = String::new();
    for v in 0..1000 {
        // 250 addresses, four ports each; the backends are the routed 198.18.100.1-100.
        vips.push_str(&format!(
            "[[vip]]\nname = \"vip{v:04}\"\naddress = \"203.0.113.{}\"\nport = {}\nbackends = [\n",
            v % 250 + 1,
            8000 + v / 250
        ));
        for b in 1..=100 {
            vips.push_str(&format!("  {{ address = \"198.18.100.{b}\" }},\n"));
        }
        vips.push_str("]\n");
    }
    let text = daemon.config_text(&vips);
    assert!(text.len() > 3_000_000, "{} bytes", text.len());
    let (status, applied) = daemon.client(None).call_toml("PUT", "/api/config", &text);
    assert_eq!(status, 200, "{applied}");
    let running = daemon.running();
    assert_eq!(running, tula_config::Config::from_toml_str(&text).unwrap());
    assert_eq!(running.vips.iter().map(|v| v.backends.len()).sum::<usize>(), 100_000);
    assert_eq!(applied["number"], daemon.revision());
}

#[test]
fn a_configured_token_is_optional_on_loopback_but_checked_when_sent() {
    let daemon = Daemon::start("loopback-token", Listen::Loopback, Some(TOKEN), WEB);
    assert_eq!(daemon.tcp(None).call("GET", "/api/vips", &[], None).0, 200);
    assert_eq!(
        daemon
            .client(Some(TOKEN))
            .call("GET", "/api/vips", &[], None)
            .0,
        200
    );
    let (status, error) =
        daemon
            .client(Some("not-the-token-at-all"))
            .call("GET", "/api/vips", &[], None);
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (401, "the bearer token does not match api.token")
    );
}

#[test]
fn loopback_tcp_serves_reads_only_and_changes_need_the_token_or_the_socket() {
    let daemon = Daemon::start("readonly", Listen::Loopback, Some(TOKEN), WEB);
    let revision = daemon.revision();
    let mut anonymous = daemon.tcp(None);
    assert_eq!(anonymous.call("GET", "/api/vips", &[], None).0, 200);
    assert_eq!(anonymous.call("GET", "/api/config", &[], None).0, 200);

    // Every kind of change, without a token over TCP: 401, and nothing applied.
    let vip = json!({"name": "evil", "address": "203.0.113.66", "port": 80});
    let (status, error) = anonymous.call("POST", "/api/vips", &[], Some(vip.clone()));
    assert_eq!(status, 401, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("a change needs a bearer token"),
        "{error}"
    );
    let no_token = json!({"api": {"listen": daemon.address.to_string()}});
    let changes: [(&str, &str, &[&str], Option<Value>); 4] = [
        ("PUT", "/api/config", &[], Some(no_token)),
        ("POST", "/api/revisions/{number}/rollback", &["1"], None),
        ("DELETE", "/api/vips/{name}", &["web"], None),
        ("POST", "/api/vips/{name}/backends/{address}/drain", &["web", "198.18.100.2"], None),
    ];
    for (method, path, args, body) in changes {
        assert_eq!(anonymous.call(method, path, args, body).0, 401, "{method} {path}");
    }
    assert_eq!(daemon.revision(), revision);
    assert_eq!(
        daemon.running().api.token.as_deref(),
        Some(TOKEN),
        "the token is still there"
    );

    // The token over TCP, or the socket, may change things.
    assert_eq!(
        daemon
            .tcp(Some(TOKEN))
            .call("POST", "/api/vips", &[], Some(vip))
            .0,
        201
    );
    let (status, _) = daemon
        .client(None)
        .call("DELETE", "/api/vips/{name}", &["evil"], None);
    assert_eq!(status, 200);
    assert_eq!(daemon.revision(), revision + 2);
}

#[test]
fn without_a_configured_token_only_the_socket_changes_anything() {
    let daemon = Daemon::start("socket-only", Listen::Loopback, None, WEB);
    for token in [Some("a-token-nobody-configured"), None] {
        let (status, error) = daemon.tcp(token).call("DELETE", "/api/vips/{name}", &["web"], None);
        assert_eq!(status, 401, "token {token:?}: {error}");
    }
    assert!(daemon.running().vip("web").is_some());
    assert_eq!(
        daemon
            .client(None)
            .call("DELETE", "/api/vips/{name}", &["web"], None)
            .0,
        200
    );
    assert!(daemon.running().vip("web").is_none());
}

#[test]
fn changes_must_be_sent_as_json() {
    let daemon = Daemon::start("content-type", Listen::Loopback, Some(TOKEN), WEB);
    let revision = daemon.revision();
    let vip = json!({"name": "api", "address": "203.0.113.11", "port": 443}).to_string();
    // What a cross-origin form or fetch without a preflight can send, even with the token.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ] {
        for mut api in [daemon.tcp(Some(TOKEN)), daemon.client(None)] {
            let (status, error) = api.call_raw("POST", "/api/vips", content_type, &vip);
            assert_eq!(status, 415, "{content_type:?}: {error}");
            assert!(
                error["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("a change must be sent with Content-Type application/json"),
                "{error}"
            );
            let (status, _) = api.call_raw("POST", "/api/revisions/1/rollback", content_type, "");
            assert_eq!(status, 415, "{content_type:?}");
        }
    }
    assert_eq!(daemon.revision(), revision);
    let (status, _) = daemon.tcp(Some(TOKEN)).call_raw(
        "POST",
        "/api/vips",
        "application/json; charset=utf-8",
        &vip,
    );
    assert_eq!(status, 201);
}

#[test]
fn requests_for_another_host_or_from_another_origin_are_refused() {
    let daemon = Daemon::start("host", Listen::Loopback, Some(TOKEN), WEB);
    let revision = daemon.revision();
    // DNS rebinding: the browser names the attacker's host.
    let mut rebound = daemon
        .tcp(None)
        .with_header("Host", "rebind.attacker.example:9100");
    let (status, error) = rebound.call("GET", "/api/config", &[], None);
    assert_eq!(status, 403, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("Host \"rebind.attacker.example:9100\" is not this daemon's"),
        "{error}"
    );
    assert_eq!(
        rebound.call_text("GET", "/ui/vips").0,
        403,
        "the web UI too"
    );
    assert_eq!(
        daemon
            .tcp(None)
            .with_header("Host", "localhost")
            .call("GET", "/api/vips", &[], None)
            .0,
        200
    );

    // A page of another origin, even one that somehow had the token.
    let mut cross = daemon
        .tcp(Some(TOKEN))
        .with_header("Origin", "http://attacker.example");
    let vip = json!({"name": "api", "address": "203.0.113.11", "port": 443});
    let (status, error) = cross.call("POST", "/api/vips", &[], Some(vip.clone()));
    assert_eq!(status, 403, "{error}");
    assert_eq!(daemon.revision(), revision);
    let same = format!("http://{}", daemon.address);
    let (status, _) = daemon.tcp(Some(TOKEN)).with_header("Origin", &same).call(
        "POST",
        "/api/vips",
        &[],
        Some(vip),
    );
    assert_eq!(status, 201);
}

#[test]
fn the_socket_serves_root_and_its_group_only() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let daemon = Daemon::start("socket-peer", Listen::Loopback, None, WEB);
    let socket = support::socket_path(&daemon.state);
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    // curl as another user (uid, gid) deleting the VIP over the socket: (curl's exit code, HTTP status).
    let delete_as = |uid: u32, gid: u32| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "DELETE",
                "-H",
                "Content-Type: application/json",
                "--unix-socket",
            ])
            .arg(&socket)
            .arg("http://localhost/api/vips/web")
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    // The file's mode keeps others out...
    assert_eq!(
        delete_as(65534, 65534),
        (Some(7), "000".to_string()),
        "nobody cannot connect"
    );
    // ...and should it be loosened, the peer's credentials still are checked.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(delete_as(65534, 65534), (Some(0), "403".to_string()));
    assert!(daemon.running().vip("web").is_some());
    // A member of the socket's group (root's here) may.
    assert_eq!(delete_as(65534, 0), (Some(0), "200".to_string()));
    assert!(daemon.running().vip("web").is_none());
}

#[test]
fn a_source_with_a_newline_cannot_forge_a_log_line() {
    let daemon = Daemon::start("log-source", Listen::Loopback, None, WEB);
    let mut api = daemon.client(None);
    let text = daemon.config_text(WEB).replace("198.18.100.3", "198.18.100.4");
    let path = "/api/config?source=deploy%0A2026-12-02T06:00:00Z%20INFO%20forged%1B%5B2J";
    let (status, applied) = api.call_toml("PUT", path, &text);
    assert_eq!(status, 200, "{applied}");
    let source = applied["source"].as_str().unwrap();
    assert_eq!(source, "api: deploy\\n2026-12-02T06:00:00Z INFO forged\\u{1b}[2J");
    assert!(!source.chars().any(char::is_control), "{source:?}");
}

#[test]
fn metrics_are_prometheus_text_with_every_counter() {
    let daemon = Daemon::start("metrics", Listen::Loopback, None, WEB);
    let mut api = daemon.client(None);
    // The checker takes up the config within moments of its start.
    let text = wait_for(Duration::from_secs(5), || {
        let (status, text) = api.call_text("GET", "/metrics");
        assert_eq!(status, 200);
        text.contains("tula_health_checks_total{").then_some(text)
    })
    .expect("no tula_health_checks_total in the metrics");

    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF" {
            continue;
        }
        samples.push(
            parse_sample(line).unwrap_or_else(|| panic!("not a Prometheus sample line: {line:?}")),
        );
    }
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        samples
            .iter()
            .find(|s| s.name == name && wanted.iter().all(|w| s.labels.contains(w)))
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{text}"))
            .value
    };
    for counter in tula_dataplane::Counter::ALL {
        value(
            "tula_dataplane_packets_total",
            &[("counter", counter.name())],
        );
    }
    assert_eq!(value("tula_config_revision", &[]), daemon.revision() as f64);
    // The loaded sizes (SMALL) and what WEB uses of them: 1 VIP, 2 backends on 2 servers.
    for (setting, limit, used) in [
        ("max_vips", 16.0, 1.0),
        ("max_backends", 256.0, 2.0),
        ("max_backend_addresses", 256.0, 2.0),
    ] {
        let labels = [("setting", setting)];
        assert_eq!(value("tula_dataplane_limit", &labels), limit, "{setting}");
        assert_eq!(value("tula_dataplane_in_use", &labels), used, "{setting}");
    }
    value(
        "tula_vip_packets_total",
        &[
            ("vip", "web"),
            ("address", "203.0.113.10"),
            ("port", "80"),
            ("protocol", "tcp"),
        ],
    );
    value("tula_vip_bytes_total", &[("vip", "web")]);
    for backend in ["198.18.100.2", "198.18.100.3"] {
        let labels = [("vip", "web"), ("backend", backend)];
        value("tula_backend_packets_total", &labels);
        value("tula_backend_bytes_total", &labels);
        assert_eq!(value("tula_backend_up", &labels), 1.0);
        assert_eq!(value("tula_backend_weight", &labels), 1.0);
        value("tula_backend_active_flows", &labels);
        value("tula_backend_table_entries", &labels);
        assert_eq!(
            value(
                "tula_backend_state",
                &[("backend", backend), ("state", "active")]
            ),
            1.0
        );
        assert_eq!(
            value(
                "tula_backend_state",
                &[("backend", backend), ("state", "drain")]
            ),
            0.0
        );
        for outcome in ["pass", "fail", "error"] {
            let mut labels = labels.to_vec();
            labels.push(("outcome", outcome));
            value("tula_health_checks_total", &labels);
        }
        for to in ["up", "down"] {
            let mut labels = labels.to_vec();
            labels.push(("to", to));
            assert_eq!(value("tula_health_transitions_total", &labels), 0.0);
        }
    }
    // Without an Accept naming OpenMetrics: Prometheus text 0.0.4.
    assert!(
        text.contains("# TYPE tula_dataplane_packets_total counter") && !text.contains("# EOF"),
        "{text}"
    );
    let (status, openmetrics) = daemon
        .client(None)
        .with_header("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .call_text("GET", "/metrics");
    assert_eq!(status, 200);
    assert!(
        openmetrics.contains("# TYPE tula_dataplane_packets counter") && openmetrics.ends_with("# EOF\n"),
        "{openmetrics}"
    );
}

/// WEB's backends (whose SYNs the next hop swallows) under a fast tcp check,
/// and a VIP that is not checked.
const SILENT_CHECKED: &str = r#"
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

#[test]
fn health_changes_show_in_status_the_health_record_and_metrics() {
    let daemon = Daemon::start("health", Listen::Loopback, None, SILENT_CHECKED);
    let mut api = daemon.client(None);
    let down = |api: &mut Client| {
        let (status, health) = api.call(
            "GET",
            "/api/vips/{name}/backends/{address}/health",
            &["web", "198.18.100.2"],
            None,
        );
        (status == 200 && health["state"] == "down").then_some(health)
    };
    // Two checks 200 ms apart, each giving up after 100 ms.
    let health = wait_for(Duration::from_secs(5), || down(&mut api))
        .expect("a backend that never answers was not marked down");
    assert_eq!(health["check"], "tcp");
    let history = health["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{health}");
    let change = &history[0];
    assert_eq!(
        (&change["from"], &change["to"]),
        (&json!("up"), &json!("down"))
    );
    assert_eq!(change["cause"]["outcome"], "fail");
    assert_eq!(
        change["cause"]["detail"], "no answer within 100ms",
        "{change}"
    );
    assert_eq!(change["time"], health["since"]);
    let since = humantime::parse_rfc3339(health["since"].as_str().unwrap()).unwrap();
    let last = &health["last_result"];
    assert!(humantime::parse_rfc3339(last["time"].as_str().unwrap()).unwrap() >= since);
    assert!(last["took_ms"].as_f64().unwrap() >= 100.0, "{last}");
    assert!(
        health["counts"]["failed"].as_u64().unwrap() >= 2,
        "{health}"
    );
    assert_eq!(health["counts"]["went_down"], 1);

    // The data plane follows: the status says unhealthy, and where new flows go.
    let status = wait_for(Duration::from_secs(5), || {
        let (_, status) = api.call("GET", "/api/status", &[], None);
        let web = status
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "web")
            .unwrap()
            .clone();
        (web["new_flows"] == "dropped").then_some(status)
    })
    .expect("both backends down, yet new flows are not dropped");
    let web = status
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "web")
        .unwrap();
    for backend in web["backends"].as_array().unwrap() {
        assert_eq!(backend["healthy"], false, "{backend}");
        assert_eq!(backend["health"]["state"], "down", "{backend}");
    }
    let quiet = status
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "quiet")
        .unwrap();
    assert_eq!(
        quiet["backends"][0]["health"],
        Value::Null,
        "not checked: {quiet}"
    );
    let (status, error) = api.call(
        "GET",
        "/api/vips/{name}/backends/{address}/health",
        &["quiet", "198.18.100.4"],
        None,
    );
    assert_eq!(status, 404);
    assert!(
        error["error"].as_str().unwrap().contains("not checked"),
        "{error}"
    );
    let (status, error) = api.call(
        "GET",
        "/api/vips/{name}/backends/{address}/health",
        &["web", "198.18.100.9"],
        None,
    );
    assert_eq!(
        (status, error["error"].as_str().unwrap()),
        (404, "VIP \"web\" has no backend 198.18.100.9")
    );

    let (_, text) = api.call_text("GET", "/metrics");
    let samples: Vec<Sample> = text.lines().filter_map(parse_sample).collect();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.contains(&(k.to_string(), v.to_string())))
            })
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{text}"))
            .value
    };
    let web2 = [("vip", "web"), ("backend", "198.18.100.2")];
    assert_eq!(value("tula_backend_up", &web2), 0.0);
    assert_eq!(
        value(
            "tula_health_transitions_total",
            &[web2[0], web2[1], ("to", "down")]
        ),
        1.0
    );
    assert!(
        value(
            "tula_health_checks_total",
            &[web2[0], web2[1], ("outcome", "fail")]
        ) >= 2.0
    );
    assert_eq!(
        value(
            "tula_backend_up",
            &[("vip", "quiet"), ("backend", "198.18.100.4")]
        ),
        1.0,
        "an unchecked backend counts as up"
    );
    assert!(
        !text.contains("tula_health_checks_total{vip=\"quiet\""),
        "an unchecked backend has no check counts"
    );

    // An apply through the API reaches the checker at once, not at its next
    // poll of the revision (every second): checks off, the backends come back.
    let (status, answer) = api.call(
        "PATCH",
        "/api/vips/{name}",
        &["web"],
        Some(json!({"health_check": {"type": "none"}})),
    );
    assert_eq!(status, 200, "{answer}");
    let applied = std::time::Instant::now();
    let unchecked = wait_for(Duration::from_secs(3), || {
        let (status, _) = api.call(
            "GET",
            "/api/vips/{name}/backends/{address}/health",
            &["web", "198.18.100.2"],
            None,
        );
        (status == 404).then(|| applied.elapsed())
    })
    .expect("the checker never dropped the unchecked backends");
    assert!(
        unchecked < Duration::from_millis(400),
        "the checker took {unchecked:?} to follow an API apply"
    );
    assert!(
        wait_for(Duration::from_secs(3), || daemon.control.status().unwrap()
            [0]
        .backends[0]
            .healthy
            .then_some(()))
        .is_some(),
        "an unchecked backend counts as up again"
    );
}

/// Polls `found` every 20 ms until it gives a value, for up to `limit`.
fn wait_for<T>(limit: Duration, mut found: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = found() {
            return Some(value);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn parallel_edits_keep_every_change() {
    let daemon = Daemon::start("parallel", Listen::Loopback, None, WEB);
    let socket = support::socket_path(&daemon.state);
    let adders: Vec<_> = (10..18)
        .map(|n| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut api = Client::over_socket(&socket);
                api.call(
                    "POST",
                    "/api/vips/{name}/backends",
                    &["web"],
                    Some(json!({"address": format!("198.18.100.{n}")})),
                )
            })
        })
        .collect();
    for adder in adders {
        let (status, answer) = adder.join().unwrap();
        assert_eq!(status, 201, "{answer}");
    }
    assert_eq!(
        daemon.running().vip("web").unwrap().backends.len(),
        2 + 8,
        "no edit overwrote another"
    );
}

#[test]
fn get_vips_is_gzipped_when_accepted_and_304_while_the_revision_is_the_same() {
    let daemon = Daemon::start("vipsgz", Listen::Loopback, None, WEB);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |headers: &[(&str, &str)]| {
        let mut request = agent.get(format!("http://{}/api/vips", daemon.address));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.call().expect("GET /api/vips");
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.body_mut().as_reader(), &mut body).unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let encoding = header("Content-Encoding");
        (
            response.status().as_u16(),
            body,
            encoding,
            header("ETag"),
            header("Vary"),
        )
    };

    let (status, plain, encoding, etag, vary) = get(&[]);
    assert_eq!((status, encoding), (200, None), "no Accept-Encoding: plain");
    assert_eq!(vary.as_deref(), Some("accept-encoding"));
    let etag = etag.expect("an ETag");
    assert_eq!(etag, format!("\"{}\"", daemon.revision()));

    let (status, gzip, encoding, gzip_etag, _) = get(&[("Accept-Encoding", "deflate, gzip;q=0.8")]);
    assert_eq!((status, encoding.as_deref()), (200, Some("gzip")));
    assert_eq!(gzip_etag.as_ref(), Some(&etag));
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzip[..]), &mut decoded)
        .expect("a gzip body");
    assert_eq!(decoded, plain, "gzip decodes to the plain JSON");

    let (_, _, encoding, _, _) = get(&[("Accept-Encoding", "gzip;q=0")]);
    assert_eq!(encoding, None, "gzip refused with q=0: plain");

    let (status, body, _, not_modified_etag, _) = get(&[("If-None-Match", &etag)]);
    assert_eq!(
        (status, body.len()),
        (304, 0),
        "the current ETag: 304, no body"
    );
    assert_eq!(not_modified_etag.as_ref(), Some(&etag));

    let (status, _) = daemon.client(None).call(
        "POST",
        "/api/vips/{name}/backends",
        &["web"],
        Some(json!({"address": "198.18.100.9"})),
    );
    assert_eq!(status, 201);
    let (status, body, _, new_etag, _) = get(&[("If-None-Match", &etag)]);
    assert_eq!(status, 200, "a change: the old ETag no longer matches");
    assert_ne!(new_etag.as_ref(), Some(&etag));
    assert!(parse(std::str::from_utf8(&body).unwrap())
        .to_string()
        .contains("198.18.100.9"));
}

/// `method path` over the socket with an optional `If-Match`: (status, JSON body, ETag).
fn conditional(
    daemon: &Daemon,
    method: &str,
    path: &str,
    if_match: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, Value, Option<String>) {
    let mut api = daemon.client(None);
    if let Some(tag) = if_match {
        api = api.with_header("If-Match", tag);
    }
    let (status, text, headers) = api.send(method, path, content_type, body);
    let etag = headers
        .get("ETag")
        .map(|v| v.to_str().unwrap().to_string());
    (status, parse(&text), etag)
}

#[test]
fn a_stale_if_match_gets_412_with_the_changes_since_and_changes_nothing() {
    let daemon = Daemon::start("ifmatch", Listen::Loopback, None, WEB);
    let base = daemon.revision();
    let (status, _, etag) = conditional(
        &daemon,
        "GET",
        "/api/vips/web",
        None,
        "application/json",
        "",
    );
    assert_eq!((status, etag), (200, Some(format!("\"{base}\""))));
    // Another operator drains a backend.
    let drain = "/api/vips/web/backends/198.18.100.2/drain";
    let (status, answer, etag) = conditional(&daemon, "POST", drain, None, "application/json", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        etag,
        Some(format!("\"{}\"", base + 1)),
        "a change answers with the new revision"
    );

    // An edit decided on the old revision is refused with what changed since.
    let weight = "/api/vips/web/backends/198.18.100.3";
    let stale = format!("\"{base}\"");
    let (status, answer, _) = conditional(
        &daemon,
        "PATCH",
        weight,
        Some(&stale),
        "application/json",
        r#"{"weight": 5}"#,
    );
    assert_eq!(status, 412, "{answer}");
    assert_eq!(answer["running_revision"], base + 1);
    assert_eq!(answer["changes"][0]["number"], base + 1);
    assert_eq!(
        answer["changes"][0]["summary"][0],
        "~ vips[web].backends[198.18.100.2].state: active -> drain"
    );
    assert_eq!(
        daemon.backend("web", "198.18.100.3").weight,
        1,
        "nothing changed"
    );
    assert_eq!(daemon.revision(), base + 1);
    let (status, answer, _) = conditional(
        &daemon,
        "POST",
        "/api/revisions/1/rollback",
        Some(&stale),
        "application/json",
        "",
    );
    assert_eq!(status, 412, "{answer}");
    let (status, answer, _) = conditional(
        &daemon,
        "PATCH",
        weight,
        Some("not-a-revision"),
        "application/json",
        r#"{"weight": 5}"#,
    );
    assert_eq!(status, 400, "{answer}");

    // With the running revision it lands.
    let current = format!("\"{}\"", base + 1);
    let (status, answer, _) = conditional(
        &daemon,
        "PATCH",
        weight,
        Some(&current),
        "application/json",
        r#"{"weight": 5}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(daemon.backend("web", "198.18.100.3").weight, 5);

    // A file that names its base revision on its first line: stale unless forced.
    let file = format!("# running revision {base}\n{}", daemon.config_text(WEB));
    let (status, answer, _) = conditional(
        &daemon,
        "PUT",
        "/api/config",
        None,
        "application/toml",
        &file,
    );
    assert_eq!(status, 412, "{answer}");
    assert_eq!(
        daemon.backend("web", "198.18.100.3").weight,
        5,
        "nothing changed"
    );
    let (status, answer, _) = conditional(
        &daemon,
        "PUT",
        "/api/config?force=true",
        None,
        "application/toml",
        &file,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(daemon.backend("web", "198.18.100.3").weight, 1);
    // GET /api/config's own shape, sent back, names its revision.
    let (_, shown, _) = conditional(&daemon, "GET", "/api/config", None, "application/json", "");
    let running = shown["revision"].as_u64().unwrap();
    let (status, answer, _) = conditional(
        &daemon,
        "PUT",
        "/api/config",
        None,
        "application/json",
        &shown.to_string(),
    );
    assert_eq!(
        (status, answer["number"].as_u64()),
        (200, Some(running)),
        "{answer}"
    );
}

#[test]
fn running_out_of_backend_ids_is_a_409_naming_the_limit() {
    let daemon = Daemon::start("capacity", Listen::Loopback, None, WEB);
    // The config allows more backends than the loaded data plane (256) holds.
    let raised = daemon
        .config_text(WEB)
        .replace("max_backends = 256", "max_backends = 1024");
    let (status, answer, _) = conditional(
        &daemon,
        "PUT",
        "/api/config",
        None,
        "application/toml",
        &raised,
    );
    assert_eq!(status, 200, "{answer}");
    let before = daemon.revision();
    let backends: Vec<Value> = (0..300)
        .map(|i| json!({ "address": format!("198.18.{}.{}", 101 + i / 200, 2 + i % 200) }))
        .collect();
    let vip = json!({"name": "big", "address": "203.0.113.20", "port": 80, "backends": backends});
    let (status, answer, _) = conditional(
        &daemon,
        "POST",
        "/api/vips",
        None,
        "application/json",
        &vip.to_string(),
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["limit"], "max_backends");
    assert_eq!(answer["limit_value"], 256);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("all 256 are in use"),
        "{answer}"
    );
    assert_eq!(daemon.revision(), before);
    assert!(daemon.running().vip("big").is_none());
}

/// One line of Prometheus text: `name{k="v",...} value` or `name value`.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let mut labels = Vec::new();
            for pair in body.split("\",").filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once("=\"")?;
                labels.push((key.to_string(), value.trim_end_matches('"').to_string()));
            }
            (name, labels)
        }
    };
    let valid_name =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid_name.then(|| Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

enum Listen {
    Loopback,
    /// 198.18.0.1 on lb0: not loopback, so the token is required.
    Veth,
}

/// A namespace with the test topology, a Control started in it from a config
/// file, and the API served on a thread in it. Unloads and removes it all on drop.
struct Daemon {
    control: Arc<Control>,
    address: SocketAddr,
    pin_dir: PathBuf,
    state: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    /// The data plane's map sizes, as config lines.
    sizes: &'static str,
    ns: Netns,
}

/// Map sizes small enough for many test data planes at once.
const SMALL: &str = "ring_size = 4093\nconn_table_size = 4096\nmax_vips = 16\nmax_backends = 256\n";

impl Daemon {
    fn start(name: &str, listen: Listen, token: Option<&str>, vips: &str) -> Daemon {
        Daemon::start_sized(name, listen, token, vips, SMALL)
    }

    /// [`Daemon::start`] with a data plane of `sizes`.
    fn start_sized(
        name: &str,
        listen: Listen,
        token: Option<&str>,
        vips: &str,
        sizes: &'static str,
    ) -> Daemon {
        let pid = std::process::id();
        let ns = Netns::create(&format!("tapi-{name}-{pid}")).expect("creating the test namespace");
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/tula-test-api-{name}-{pid}"));
        let state = std::env::temp_dir().join(format!("tula-api-test-{name}-{pid}"));
        let _ = std::fs::remove_dir_all(&pin_dir);
        let _ = std::fs::remove_dir_all(&state);
        // This test's thread lives in the namespace from here on: Control, the
        // server's threads and the clients all act in it.
        ns.enter().expect("entering the test namespace");
        build_topology();

        let ip: std::net::IpAddr = match listen {
            Listen::Loopback => Ipv4Addr::LOCALHOST.into(),
            Listen::Veth => LB_ADDR.into(),
        };
        let listener = TcpListener::bind((ip, 0)).expect("binding the API socket");
        let address = listener.local_addr().unwrap();
        let token_line = token
            .map(|t| format!("token = \"{t}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "{}\n[api]\nlisten = \"{address}\"\n{token_line}{vips}",
            globals(&pin_dir, sizes)
        );
        let (control, runtime) = support::serve(listener, &text, &state, |_| axum::Router::new());
        Daemon {
            control,
            address,
            pin_dir,
            state,
            runtime: Some(runtime),
            sizes,
            ns,
        }
    }

    /// A client over the API socket (as root: an operator) without a
    /// token, or over TCP with `token`.
    fn client(&self, token: Option<&str>) -> Client {
        match token {
            None => Client::over_socket(&support::socket_path(&self.state)),
            Some(token) => Client::new(self.address, Some(token)),
        }
    }

    /// A client over TCP, with or without a token.
    fn tcp(&self, token: Option<&str>) -> Client {
        Client::new(self.address, token)
    }

    fn running(&self) -> tula_config::Config {
        self.control.running().1
    }

    fn revision(&self) -> u64 {
        self.control.running().0
    }

    fn backend(&self, vip: &str, address: &str) -> tula_config::Backend {
        let config = self.running();
        let vip = config.vip(vip).unwrap_or_else(|| panic!("no VIP {vip}"));
        vip.backends
            .iter()
            .find(|b| b.address.to_string() == address)
            .unwrap_or_else(|| panic!("no backend {address}"))
            .clone()
    }

    /// A whole config file for this daemon with `vips`.
    fn config_text(&self, vips: &str) -> String {
        format!(
            "{}\n[api]\nlisten = \"{}\"\n{vips}",
            globals(&self.pin_dir, self.sizes),
            self.address
        )
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
        let _ = &self.ns; // dropped after this: the namespace goes last
    }
}

fn globals(pin_dir: &std::path::Path, sizes: &str) -> String {
    format!(
        "interfaces = [\"lb0\"]\npin_dir = \"{}\"\n{sizes}",
        pin_dir.display()
    )
}

fn build_topology() {
    tula_net::add_veth("lb0", "nh0", None).unwrap();
    tula_net::set_up("lb0").unwrap();
    tula_net::set_up("nh0").unwrap();
    tula_net::add_address("lb0", LB_ADDR.into(), 24).unwrap();
    let next_hop = Ipv4Addr::new(198, 18, 0, 2);
    tula_net::add_neighbour("lb0", next_hop, [0x02, 0, 0, 0, 0, 0x02]).unwrap();
    tula_net::add_route(Ipv4Addr::new(198, 18, 100, 0), 24, Some(next_hop), None).unwrap();
}

/// A blocking HTTP client that records which routes it called.
struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    /// Extra headers sent with every request.
    headers: Vec<(String, String)>,
    /// "METHOD /pattern" of every call, to check that a test covered every route.
    called: BTreeSet<String>,
}

impl Client {
    fn new(address: SocketAddr, token: Option<&str>) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            agent,
            base: format!("http://{address}"),
            token: token.map(str::to_string),
            headers: Vec::new(),
            called: BTreeSet::new(),
        }
    }

    /// A client of the daemon's Unix socket, as the CLI on the balancer is.
    fn over_socket(path: &std::path::Path) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        Client {
            agent: tula_api::socket_agent(path, config),
            base: tula_api::SOCKET_BASE.to_string(),
            token: None,
            headers: Vec::new(),
            called: BTreeSet::new(),
        }
    }

    /// Sends `name: value` with every request from now on.
    fn with_header(mut self, name: &str, value: &str) -> Client {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Calls `pattern` (a route, `{param}`s filled from `args` in order) with a JSON body.
    fn call(
        &mut self,
        method: &str,
        pattern: &str,
        args: &[&str],
        body: Option<Value>,
    ) -> (u16, Value) {
        self.called.insert(format!("{method} {pattern}"));
        let mut path = pattern.to_string();
        for arg in args {
            let start = path.find('{').expect("more args than parameters");
            let end = path[start..].find('}').unwrap() + start;
            path.replace_range(start..=end, arg);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, text, _) = self.send(method, &path, "application/json", &body);
        (status, parse(&text))
    }

    fn call_toml(&mut self, method: &str, path: &str, toml: &str) -> (u16, Value) {
        self.called
            .insert(format!("{method} {}", path.split('?').next().unwrap()));
        let (status, text, _) = self.send(method, path, "application/toml", toml);
        (status, parse(&text))
    }

    fn call_raw(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, Value) {
        let (status, text, _) = self.send(method, path, content_type, body);
        (status, parse(&text))
    }

    fn call_text(&mut self, method: &str, path: &str) -> (u16, String) {
        self.called.insert(format!("{method} {path}"));
        let (status, text, _) = self.send(method, path, "application/json", "");
        (status, text)
    }

    /// The status, the JSON body and the WWW-Authenticate header.
    fn call_with_headers(&mut self, method: &str, path: &str) -> (u16, Value, Option<String>) {
        let (status, text, headers) = self.send(method, path, "application/json", "");
        let authenticate = headers
            .get("WWW-Authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        (status, parse(&text), authenticate)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, String, ureq::http::HeaderMap) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let sent = if body.is_empty() {
            self.agent.run(request.body(()).unwrap())
        } else {
            self.agent.run(request.body(body.to_string()).unwrap())
        };
        let mut response = sent.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, text, response.headers().clone())
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
