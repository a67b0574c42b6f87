//! TOML in and out: defaults, round trips, and the exact text of decoding problems.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tula_config::{
    AllDown, BackendState, ByteSize, CheckType, Config, DsrType, HealthCheck, HostFacts, Mode, Protocol,
    Scheduler, StatusRange, Subnet,
};

const EXAMPLE: &str = include_str!("../../../docs/tula.example.toml");

fn decode_problems(text: &str) -> Vec<String> {
    match Config::from_toml_str(text) {
        Ok(config) => panic!("decoded without problems: {config:?}"),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn defaults() {
    let c = Config::from_toml_str(
        r#"
        interfaces = ["eth0"]
        [[vip]]
        name = "web"
        address = "203.0.113.10"
        backends = [{ address = "198.18.3.2" }]
        "#,
    )
    .unwrap();
    assert_eq!(c.tunnel_source, None);
    assert_eq!(c.ring_size, 65537);
    assert_eq!(c.conn_table_size, 1_000_000);
    assert_eq!(c.max_vips, 512);
    assert_eq!(c.max_backends, 4096);
    assert_eq!(c.pin_dir.to_str(), Some("/sys/fs/bpf/tula"));
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:9100");
    assert_eq!(c.api.token, None);
    let vip = &c.vips[0];
    assert_eq!(vip.port, 0);
    assert_eq!(vip.protocol, Protocol::Tcp);
    assert_eq!(vip.mode, Mode::Dsr);
    assert_eq!(vip.dsr_type, DsrType::L3Ipip);
    assert_eq!(vip.scheduler, Scheduler::Maglev);
    assert_eq!(vip.all_down, AllDown::Drop);
    assert_eq!(vip.sorry_backend, None);
    assert_eq!(vip.backends[0].port, None);
    assert_eq!(vip.backends[0].weight, 1);
    assert_eq!(vip.backends[0].state, BackendState::Active);
    let hc = &vip.health_check;
    assert_eq!(*hc, HealthCheck::default());
    assert_eq!(hc.kind, CheckType::Tcp);
    assert_eq!(
        (hc.interval, hc.timeout, hc.rise, hc.fall),
        (Duration::from_secs(2), Duration::from_secs(1), 2, 3)
    );
    assert_eq!(hc.path_or_default(), "/");
    assert_eq!(
        hc.expect_status_or_default(),
        StatusRange {
            low: 200,
            high: 399
        }
    );
    assert_eq!(hc.port_for(0), None);
    assert_eq!(hc.port_for(80), Some(80));
    // An empty file is a config too (it fails validation for want of interfaces).
    assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
}

#[test]
fn example_config_parses_and_validates() {
    let c = Config::from_toml_str(EXAMPLE).unwrap();
    c.validate(&HostFacts::default()).unwrap();
    // And against a host that has what it names.
    let host = HostFacts {
        interfaces: Some(BTreeSet::from(["lo".into(), "eth0".into(), "eth1".into()])),
        local_addresses: Some(BTreeSet::from([
            "198.18.1.2".parse().unwrap(),
            "198.18.20.1".parse().unwrap(),
        ])),
        connected_subnets: Some(BTreeMap::from([
            (
                "eth0".into(),
                vec!["198.18.1.0/24".parse::<Subnet>().unwrap()],
            ),
            (
                "eth1".into(),
                vec!["198.18.20.0/24".parse::<Subnet>().unwrap()],
            ),
        ])),
    };
    c.validate(&host).unwrap();

    assert_eq!(c.vips.len(), 2);
    let web = c.vip("web").unwrap();
    assert_eq!(web.backends.len(), 3);
    assert_eq!(web.backends[1].weight, 3);
    assert_eq!(web.backends[2].state, BackendState::Drain);
    assert_eq!(web.health_check.kind, CheckType::Http);
    assert_eq!(web.health_check.path.as_deref(), Some("/healthz"));
    let dns = c.vip("dns").unwrap();
    assert_eq!(
        (dns.protocol, dns.dsr_type, dns.scheduler),
        (Protocol::Udp, DsrType::L2, Scheduler::SourceHash)
    );
    assert_eq!(dns.all_down, AllDown::Sorry);
    assert_eq!(dns.health_check.interval, Duration::from_secs(5));
    assert_eq!(dns.backends[1].port, Some(53));
}

#[test]
fn toml_round_trip() {
    let c = Config::from_toml_str(EXAMPLE).unwrap();
    let text = c.to_toml_string();
    assert_eq!(Config::from_toml_str(&text).unwrap(), c, "re-read:\n{text}");
    // Writing is stable: the second text equals the first.
    assert_eq!(Config::from_toml_str(&text).unwrap().to_toml_string(), text);

    // Every optional key set.
    let mut full = c.clone();
    full.tunnel_source = Some("198.18.1.2".parse().unwrap());
    full.api.token = Some("0123456789abcdef0123".into());
    let hc = &mut full.vips[0].health_check;
    hc.kind = CheckType::Https;
    hc.port = Some(443);
    hc.interval = Duration::from_millis(1500);
    hc.timeout = Duration::from_millis(500);
    hc.expect_status = Some(StatusRange {
        low: 204,
        high: 204,
    });
    hc.expect_body = Some("ok \"quoted\"".into());
    hc.host = Some("www.example.com".into());
    hc.tls_verify = Some(true);
    full.vips[1].all_down = AllDown::KeepLast;
    full.vips[1].sorry_backend = None;
    full.vips[1].scheduler = Scheduler::WeightedRoundRobin;
    full.vips[1].backends[0].state = BackendState::Disabled;
    full.vips[1].icmp_echo = false;
    full.path_mtu.insert("eth0".into(), 1480);
    full.icmp = tula_config::Icmp {
        frag_needed: false,
        rate: 10,
        burst: 2,
    };
    let text = full.to_toml_string();
    assert!(text.contains("icmp_echo = false"), "{text}");
    assert!(text.contains("interval = \"1500ms\""), "{text}");
    assert!(text.contains("expect_status = \"204\""), "{text}");
    assert_eq!(
        Config::from_toml_str(&text).unwrap(),
        full,
        "re-read:\n{text}"
    );
}

#[test]
fn json_round_trip_and_redaction() {
    let mut c = Config::from_toml_str(EXAMPLE).unwrap();
    c.api.token = Some("0123456789abcdef0123".into());
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c);
    let value: serde_json::Value = serde_json::to_value(&c).unwrap();
    assert_eq!(value["vip"][0]["name"], "web");
    assert_eq!(value["vip"][0]["dsr_type"], "l3-ipip");
    assert_eq!(value["vip"][0]["health_check"]["interval"], "2s");
    assert_eq!(value["vip"][1]["scheduler"], "source-hash");

    let shown = serde_json::to_string(&c.redacted()).unwrap();
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    assert!(shown.contains("\"token\":\"********\""), "{shown}");

    let errors = Config::from_toml_str("ring_size = \"big\"").unwrap_err();
    assert_eq!(
        serde_json::to_value(&errors).unwrap(),
        serde_json::json!({"errors": [{"path": "ring_size", "message": "invalid type: string \"big\", expected u32 (line 1, column 13)"}]})
    );
}

#[test]
fn durations_and_status_ranges_as_text() {
    use tula_config::duration_text::{format, parse};
    assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
    for bad in ["2", "s", "2 s", "1.5s", "-1s", "2h", ""] {
        assert_eq!(
            parse(bad),
            Err(format!("invalid duration {bad:?}: expected a whole number and a unit ms, s or m, like \"2s\""))
        );
    }
    assert_eq!(format(Duration::from_millis(2500)), "2500ms");
    assert_eq!(format(Duration::from_secs(3)), "3s");
    assert_eq!(format(Duration::from_secs(120)), "2m");
    assert_eq!(format(Duration::ZERO), "0s");

    let c = Config::from_toml_str(
        "[[vip]]\nname = \"a\"\naddress = \"203.0.113.1\"\nhealth_check = { type = \"http\", expect_status = 204 }\n",
    )
    .unwrap();
    assert_eq!(
        c.vips[0].health_check.expect_status,
        Some(StatusRange {
            low: 204,
            high: 204
        })
    );
    assert!(StatusRange {
        low: 200,
        high: 299
    }
    .contains(204));
}

#[test]
fn sizes_as_text() {
    assert_eq!("64MiB".parse(), Ok(ByteSize(64 << 20)));
    assert_eq!("512KiB".parse(), Ok(ByteSize(512 << 10)));
    assert_eq!("1GiB".parse(), Ok(ByteSize(1 << 30)));
    assert_eq!("100B".parse(), Ok(ByteSize(100)));
    for bad in ["64", "MiB", "64 MiB", "64MB", "1.5GiB", "-1B", "99999999999GiB", ""] {
        assert_eq!(
            bad.parse::<ByteSize>(),
            Err(format!("invalid size {bad:?}: expected a whole number and a unit B, KiB, MiB or GiB, like \"64MiB\""))
        );
    }
    for (size, text) in [(64 << 20, "64MiB"), (1536, "1536B"), (3072, "3KiB"), (1000, "1000B"), (0, "0B"), (3 << 30, "3GiB")] {
        assert_eq!(ByteSize(size).to_string(), text);
    }

    let c = Config::from_toml_str("keep_revisions_size = \"256MiB\"\n").unwrap();
    assert_eq!(c.keep_revisions_size, Some(ByteSize(256 << 20)));
    assert!(c.to_toml_string().contains("keep_revisions_size = \"256MiB\""));
    assert_eq!(Config::from_toml_str(&c.to_toml_string()).unwrap(), c);
    assert_eq!(Config::default().keep_revisions_size, None, "no budget unless asked");
}

#[test]
fn unknown_keys_at_every_level() {
    let text = r#"
rign_size = 65537
interfaces = ["eth0"]

[api]
listen = "127.0.0.1:9100"
tokn = "x"

[[vip]]
name = "web"
address = "203.0.113.10"
protcol = "tcp"
health_check = { type = "tcp", intervl = "2s" }
backends = [{ address = "198.18.3.2", wieght = 3 }]
"#;
    assert_eq!(
        decode_problems(text),
        [
            "rign_size: unknown key `rign_size`, expected one of `interfaces`, `tunnel_source`, `path_mtu`, `icmp`, `ring_size`, \
             `conn_table_size`, `max_vips`, `max_backends`, `max_backend_addresses`, `pin_dir`, `keep_revisions`, `keep_revisions_size`, `api`, `cluster`, `vip` (line 2, column 1)",
            "api.tokn: unknown key `tokn`, expected `listen` or `token` (line 7, column 1)",
            "vips[web].protcol: unknown key `protcol`, expected one of `name`, `address`, `port`, `protocol`, \
             `mode`, `dsr_type`, `scheduler`, `backends`, `health_check`, `all_down`, `sorry_backend`, `icmp_echo` (line 12, column 1)",
            "vips[web].health_check.intervl: unknown key `intervl`, expected one of `type`, `port`, `interval`, \
             `timeout`, `rise`, `fall`, `path`, `expect_status`, `expect_body`, `host`, `tls_verify` (line 13, column 32)",
            "vips[web].backends[0].wieght: unknown key `wieght`, expected one of `address`, `port`, `weight`, \
             `state` (line 14, column 39)",
        ]
    );
}

#[test]
fn wrong_types_and_values_all_at_once() {
    let text = r#"interfaces = ["eth0", 3]
ring_size = "big"

[api]
listen = "nope"

[[vip]]
name = "web"
address = "203.0.113"
port = 70000
protocol = "sctp"
dsr_type = "l4"

[[vip.backends]]
address = "198.18.3.2"
weight = "heavy"
state = "up"

[vip.health_check]
interval = "2 s"
expect_status = "ok"

[[vip]]
address = "203.0.113.11"
"#;
    assert_eq!(
        decode_problems(text),
        [
            "interfaces[1]: invalid type: integer `3`, expected a string (line 1, column 23)",
            "ring_size: invalid type: string \"big\", expected u32 (line 2, column 13)",
            "api.listen: invalid socket address syntax, found \"nope\" (line 5, column 10)",
            "vips[web].address: invalid IP address syntax, found \"203.0.113\" (line 9, column 11)",
            "vips[web].port: invalid value: integer `70000`, expected u16 (line 10, column 8)",
            "vips[web].protocol: unknown variant `sctp`, expected `tcp` or `udp` (line 11, column 12)",
            "vips[web].dsr_type: unknown variant `l4`, expected `l2` or `l3-ipip` (line 12, column 12)",
            "vips[web].backends[0].weight: invalid type: string \"heavy\", expected u32 (line 16, column 10)",
            "vips[web].backends[0].state: unknown variant `up`, expected one of `active`, `drain`, `disabled` (line 17, column 9)",
            "vips[web].health_check.interval: invalid duration \"2 s\": expected a whole number and a unit ms, s or m, like \"2s\" (line 20, column 12)",
            "vips[web].health_check.expect_status: invalid status \"ok\": expected a status like 200 or a range like \"200-399\" (line 21, column 17)",
            "vips[1]: missing key `name` (line 23, column 1)",
        ]
    );
}

#[test]
fn wrong_shapes() {
    assert_eq!(
        decode_problems("vip = 3"),
        ["vip: expected [[vip]] tables, found integer (line 1, column 7)"]
    );
    assert_eq!(
        decode_problems("api = \"x\""),
        ["api: expected a table, found string (line 1, column 7)"]
    );
    assert_eq!(
        decode_problems("[[vip]]\nname = \"a\"\naddress = \"203.0.113.1\"\nbackends = 5\nhealth_check = [1]\n"),
        [
            "vips[a].backends: expected an array of backend tables, found integer (line 4, column 12)",
            "vips[a].health_check: expected a table, found array (line 5, column 16)",
        ]
    );
    assert_eq!(
        decode_problems(
            "[[vip]]\nname = \"a\"\naddress = \"203.0.113.1\"\nbackends = [\"198.18.3.2\"]\n"
        ),
        ["vips[a].backends[0]: expected a table, found string (line 4, column 13)"]
    );
}

#[test]
fn syntax_error_reports_its_position() {
    assert_eq!(
        decode_problems("interfaces = [\"eth0\"\nring_size = 3\n"),
        ["document: missing comma between array elements, expected `,` (line 2, column 1)"]
    );
    assert_eq!(
        decode_problems("ring_size = 3\nring_size = 5\n"),
        ["document: duplicate key (line 2, column 1)"]
    );
}
