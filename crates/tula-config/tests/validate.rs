//! Every validation rule, with the exact text it reports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use tula_config::{
    AllDown, Backend, BackendState, CheckType, Config, DsrType, HostFacts, Protocol, Scheduler,
    StatusRange, Subnet,
};

const BASE: &str = r#"
interfaces = ["eth0"]

[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{ address = "198.18.3.2" }, { address = "198.18.3.3" }, { address = "198.18.3.4" }]
"#;

fn base() -> Config {
    let config = Config::from_toml_str(BASE).unwrap();
    config.validate(&HostFacts::default()).unwrap();
    config
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn backend(address: &str) -> Backend {
    Backend {
        address: ip(address),
        port: None,
        weight: 1,
        state: BackendState::Active,
    }
}

/// The problems as displayed, one `path: message` per entry.
fn problems(config: &Config, host: &HostFacts) -> Vec<String> {
    match config.validate(host) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn problems_without_host(config: &Config) -> Vec<String> {
    problems(config, &HostFacts::default())
}

fn host(interfaces: &[&str], local: &[&str]) -> HostFacts {
    HostFacts {
        interfaces: Some(interfaces.iter().map(|s| s.to_string()).collect()),
        local_addresses: Some(local.iter().map(|s| ip(s)).collect()),
        connected_subnets: None,
    }
}

#[test]
fn backend_port_must_equal_the_vip_port() {
    let mut c = base();
    c.vips[0].backends[1].port = Some(8080);
    c.vips[0].backends[2].port = Some(80); // the same port may be spelled out
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].backends[1].port: 8080 differs from the VIP port 80; DSR cannot translate ports"]
    );
}

#[test]
fn backend_port_is_refused_on_an_all_ports_vip() {
    let mut c = base();
    c.vips[0].port = 0;
    c.vips[0].health_check.port = Some(80);
    c.vips[0].backends[0].port = Some(443);
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].backends[0].port: 443 is set but the VIP serves all ports (port 0); DSR cannot translate ports"]
    );
}

#[test]
fn duplicate_vip_names() {
    let mut c = base();
    let mut other = c.vips[0].clone();
    other.port = 443;
    c.vips.push(other.clone());
    other.port = 8443;
    c.vips.push(other);
    assert_eq!(
        problems_without_host(&c),
        [
            r#"vips[web].name: "web" names more than one VIP (positions 0, 1, 2 in file order, from 0)"#
        ]
    );
}

#[test]
fn duplicate_vip_address_port_and_protocol() {
    let mut c = base();
    let mut same = c.vips[0].clone();
    same.name = "web2".into();
    c.vips.push(same.clone());
    // Another port, or another protocol, is another VIP.
    let mut other_port = same.clone();
    other_port.name = "web3".into();
    other_port.port = 0;
    other_port.health_check.port = Some(80);
    c.vips.push(other_port);
    let mut udp = same;
    udp.name = "quic".into();
    udp.protocol = Protocol::Udp;
    c.vips.push(udp);
    assert_eq!(
        problems_without_host(&c),
        ["vips[web2]: same address, port and protocol as vips[web] (203.0.113.10:80/tcp)"]
    );
}

#[test]
fn duplicate_backends_within_a_vip() {
    let mut c = base();
    c.vips[0].backends.push(backend("198.18.3.3"));
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].backends[3].address: 198.18.3.3 is listed twice (also backends[1])"]
    );
}

#[test]
fn the_same_backend_may_serve_two_vips() {
    let mut c = base();
    let mut other = c.vips[0].clone();
    other.name = "tls".into();
    other.port = 443;
    c.vips.push(other);
    assert!(problems_without_host(&c).is_empty());
}

#[test]
fn an_ipv6_vip_takes_ipv6_backends_only() {
    let mut c = base();
    c.vips[0].address = ip("2001:db8::10");
    c.vips[0].backends = vec![backend("2001:db8::2"), backend("198.18.3.3")];
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].backends[1].address: IPv4 backend 198.18.3.3 for IPv6 VIP 2001:db8::10: IPv6 VIPs need IPv6 backends"]
    );
    c.vips[0].backends.pop();
    assert!(problems_without_host(&c).is_empty());
}

#[test]
fn an_ipv4_vip_may_have_ipv6_backends_in_l3_dsr_only() {
    let mut c = base();
    c.vips[0].backends[2].address = ip("2001:db8::4");
    assert!(problems_without_host(&c).is_empty(), "IPv4 in IPv6");
    c.vips[0].dsr_type = DsrType::L2;
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].backends[2].address: IPv6 backend 2001:db8::4 for IPv4 VIP 203.0.113.10: L2 DSR needs backends of the VIP's family"]
    );
}

#[test]
fn ipv6_addresses_that_name_no_host_are_refused() {
    let mut c = base();
    c.vips[0].address = ip("fe80::10");
    c.vips[0].backends = vec![backend("::1"), backend("ff02::2"), backend("::ffff:198.18.3.3"), backend("::")];
    assert_eq!(
        problems_without_host(&c),
        [
            "vips[web].address: fe80::10 cannot be a VIP (link-local: it names no host beyond one link)",
            "vips[web].backends[0].address: ::1 cannot be a backend (loopback)",
            "vips[web].backends[1].address: ff02::2 cannot be a backend (multicast)",
            "vips[web].backends[2].address: ::ffff:198.18.3.3 cannot be a backend (an IPv4-mapped IPv6 address: write the IPv4 address)",
            "vips[web].backends[3].address: :: cannot be a backend (unspecified)",
        ]
    );
}

#[test]
fn l2_ipv6_backends_must_be_on_a_connected_subnet() {
    let mut c = base();
    c.vips[0].address = ip("2001:db8:113::10");
    c.vips[0].dsr_type = DsrType::L2;
    c.vips[0].backends = vec![backend("2001:db8:3::2"), backend("2001:db8:11::2")];
    let facts = HostFacts {
        connected_subnets: Some(BTreeMap::from([(
            "eth0".to_string(),
            vec!["198.18.3.0/24".parse().unwrap(), "2001:db8:3::/64".parse().unwrap()],
        )])),
        ..HostFacts::default()
    };
    assert_eq!(
        problems(&c, &facts),
        ["vips[web].backends[1].address: 2001:db8:11::2 is not on a subnet connected to the interfaces \
          (eth0 198.18.3.0/24, eth0 2001:db8:3::/64); L2 DSR needs backends on the balancer's segment"]
    );
}

#[test]
fn two_ipv6_vips_on_one_socket_are_named_with_brackets() {
    let mut c = base();
    c.vips[0].address = ip("2001:db8::10");
    c.vips[0].backends = vec![backend("2001:db8::2")];
    let mut twin = c.vips[0].clone();
    twin.name = "twin".into();
    c.vips.push(twin);
    let problems = problems_without_host(&c);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("[2001:db8::10]:80/tcp"), "{problems:?}");
}

#[test]
fn vip_equal_to_a_backend() {
    let mut c = base();
    c.vips[0].backends[0].address = ip("203.0.113.10");
    let mut other = c.vips[0].clone();
    other.name = "api".into();
    other.address = ip("198.18.3.4"); // a backend of web
    other.backends = vec![backend("198.18.3.9")];
    c.vips.push(other);
    assert_eq!(
        problems_without_host(&c),
        [
            "vips[web].backends[0].address: 203.0.113.10 is the address of a VIP (vips[web])",
            "vips[web].backends[2].address: 198.18.3.4 is the address of a VIP (vips[api])",
        ]
    );
}

#[test]
fn vip_equal_to_a_local_address_of_another_use() {
    let mut c = base();
    let facts = host(&["eth0"], &["198.18.1.2", "203.0.113.10"]);
    assert_eq!(
        problems(&c, &facts),
        ["vips[web].address: 203.0.113.10 is a local address of this host, in use for something else"]
    );

    c.tunnel_source = Some(ip("203.0.113.10"));
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].address: 203.0.113.10 is the tunnel source"]
    );

    c.tunnel_source = None;
    c.api.listen = "203.0.113.10:9100".parse().unwrap();
    c.api.token = Some("a-token-of-sixteen-chars".into());
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].address: 203.0.113.10 is the API listen address"]
    );
}

#[test]
fn unusable_addresses() {
    let mut c = base();
    c.vips[0].address = ip("127.0.0.1");
    c.vips[0].backends[0].address = ip("0.0.0.0");
    c.vips[0].backends[1].address = ip("224.0.0.1");
    c.vips[0].backends[2].address = ip("255.255.255.255");
    assert_eq!(
        problems_without_host(&c),
        [
            "vips[web].address: 127.0.0.1 cannot be a VIP (loopback)",
            "vips[web].backends[0].address: 0.0.0.0 cannot be a backend (unspecified)",
            "vips[web].backends[1].address: 224.0.0.1 cannot be a backend (multicast)",
            "vips[web].backends[2].address: 255.255.255.255 cannot be a backend (broadcast)",
        ]
    );
}

#[test]
fn weights_out_of_range() {
    let mut c = base();
    c.vips[0].backends[0].weight = 1000;
    c.vips[0].backends[1].weight = 1001;
    c.vips[0].backends[2].weight = 0;
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].backends[1].weight: 1001 is out of range 0..=1000"]
    );
}

#[test]
fn every_scheduler_is_accepted_with_any_weights() {
    for scheduler in [
        Scheduler::Maglev,
        Scheduler::SourceHash,
        Scheduler::RoundRobin,
        Scheduler::WeightedRoundRobin,
    ] {
        let mut c = base();
        c.vips[0].scheduler = scheduler;
        c.vips[0].backends[0].weight = 3;
        c.vips[0].backends[1].weight = 0;
        assert_eq!(
            problems_without_host(&c),
            Vec::<String>::new(),
            "{scheduler:?}"
        );
    }
    // least-connections is not a scheduler tula offers (docs/CONFIG.md says why).
    let text = BASE.replace("port = 80", "port = 80\nscheduler = \"least-connections\"");
    let errors: Vec<String> = match Config::from_toml_str(&text) {
        Ok(_) => panic!("least-connections decoded"),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    };
    assert_eq!(
        errors,
        [
            "vips[web].scheduler: unknown variant `least-connections`, expected one of `maglev`, \
          `source-hash`, `round-robin`, `weighted-round-robin` (line 8, column 13)"
        ]
    );
}

#[test]
fn weight_zero_drains() {
    let mut b = backend("198.18.3.2");
    b.weight = 0;
    assert_eq!(b.effective_state(), BackendState::Drain);
    b.state = BackendState::Disabled;
    assert_eq!(b.effective_state(), BackendState::Disabled);
    b.weight = 5;
    b.state = BackendState::Active;
    assert_eq!(b.effective_state(), BackendState::Active);
}

#[test]
fn interfaces_must_exist_and_be_listed_once() {
    let mut c = base();
    c.interfaces = vec![
        "eth0".into(),
        "eth7".into(),
        "eth0".into(),
        "bad/name".into(),
    ];
    let facts = host(&["lo", "eth0", "eth1"], &[]);
    assert_eq!(
        problems(&c, &facts),
        [
            r#"interfaces[1]: no interface named "eth7" on this host"#,
            r#"interfaces[2]: "eth0" is listed twice"#,
            r#"interfaces[3]: "bad/name" is not a valid interface name"#,
        ]
    );
    c.interfaces.clear();
    assert_eq!(
        problems(&c, &facts),
        ["interfaces: at least one interface is required"]
    );
}

#[test]
fn ring_size_must_be_prime_and_above_each_vips_backend_count() {
    let mut c = base();
    c.ring_size = 65536;
    assert_eq!(problems_without_host(&c), ["ring_size: 65536 is not prime"]);
    c.ring_size = 3;
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].backends: 3 backends need a ring_size above 3 (ring_size is 3)"]
    );
    c.ring_size = 5;
    assert!(problems_without_host(&c).is_empty());
}

#[test]
fn l2_backends_must_be_on_a_connected_subnet() {
    let mut c = base();
    c.vips[0].dsr_type = DsrType::L2;
    c.vips[0].backends[2].address = ip("198.18.11.2");
    let subnet = |s: &str| s.parse::<Subnet>().unwrap();
    let mut facts = HostFacts {
        connected_subnets: Some(BTreeMap::from([
            (
                "eth0".to_string(),
                vec![subnet("198.18.3.0/24"), subnet("198.18.9.0/30")],
            ),
            // Connected, but not to an interface tula uses.
            ("eth1".to_string(), vec![subnet("198.18.11.0/24")]),
        ])),
        ..HostFacts::default()
    };
    assert_eq!(
        problems(&c, &facts),
        ["vips[web].backends[2].address: 198.18.11.2 is not on a subnet connected to the interfaces \
          (eth0 198.18.3.0/24, eth0 198.18.9.0/30); L2 DSR needs backends on the balancer's segment"]
    );
    // L3 DSR routes to anywhere.
    c.vips[0].dsr_type = DsrType::L3Ipip;
    assert!(problems(&c, &facts).is_empty());
    // Without the fact, the rule is skipped.
    c.vips[0].dsr_type = DsrType::L2;
    facts.connected_subnets = None;
    assert!(problems(&c, &facts).is_empty());
}

#[test]
fn api_token_is_required_unless_listening_on_loopback() {
    let mut c = base();
    c.api.listen = "0.0.0.0:9100".parse().unwrap();
    assert_eq!(
        problems_without_host(&c),
        ["api.token: required because api.listen 0.0.0.0:9100 is not a loopback address"]
    );
    c.api.token = Some("short".into());
    assert_eq!(
        problems_without_host(&c),
        ["api.token: must be at least 16 characters"]
    );
    c.api.token = Some("0123456789abcdef".into());
    assert!(problems_without_host(&c).is_empty());
    c.api.listen = "[::1]:9100".parse().unwrap();
    c.api.token = None;
    assert!(problems_without_host(&c).is_empty());
}

#[test]
fn tunnel_source_must_be_a_local_ipv4_address() {
    let mut c = base();
    let facts = host(&["eth0"], &["198.18.1.2"]);
    c.tunnel_source = Some(ip("198.18.1.2"));
    assert!(problems(&c, &facts).is_empty());
    c.tunnel_source = Some(ip("198.18.1.9"));
    assert_eq!(
        problems(&c, &facts),
        ["tunnel_source: 198.18.1.9 is not an address of this host"]
    );
    c.tunnel_source = Some(ip("2001:db8::1"));
    assert_eq!(
        problems(&c, &facts),
        ["tunnel_source: 2001:db8::1 is not an address of this host"]
    );
    c.tunnel_source = Some(ip("0.0.0.0"));
    assert_eq!(
        problems(&c, &facts),
        ["tunnel_source: 0.0.0.0 cannot be a tunnel source (unspecified)"]
    );
}

#[test]
fn sorry_backend_goes_with_the_sorry_policy() {
    let mut c = base();
    c.vips[0].all_down = AllDown::Sorry;
    assert_eq!(
        problems_without_host(&c),
        [r#"vips[web].sorry_backend: required when all_down is "sorry""#]
    );
    c.vips[0].sorry_backend = Some(ip("198.18.3.9"));
    assert!(problems_without_host(&c).is_empty());
    c.vips[0].sorry_backend = Some(ip("198.18.3.3"));
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].sorry_backend: 198.18.3.3 is also backends[1]; the sorry backend must be another server"]
    );
    c.vips[0].sorry_backend = Some(ip("2001:db8::9"));
    c.vips[0].dsr_type = DsrType::L2;
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].sorry_backend: IPv6 backend 2001:db8::9 for IPv4 VIP 203.0.113.10: L2 DSR needs backends of the VIP's family"]
    );
    c.vips[0].dsr_type = DsrType::L3Ipip;
    c.vips[0].all_down = AllDown::KeepLast;
    c.vips[0].sorry_backend = Some(ip("198.18.3.9"));
    assert_eq!(
        problems_without_host(&c),
        [r#"vips[web].sorry_backend: only used when all_down is "sorry" (it is "keep-last")"#]
    );
}

#[test]
fn health_check_rules() {
    let mut c = base();
    let hc = &mut c.vips[0].health_check;
    hc.kind = CheckType::Tcp;
    hc.interval = std::time::Duration::from_secs(2);
    hc.timeout = std::time::Duration::from_secs(3);
    hc.rise = 0;
    hc.fall = 0;
    hc.path = Some("/healthz".into());
    hc.tls_verify = Some(true);
    assert_eq!(
        problems_without_host(&c),
        [
            "vips[web].health_check.timeout: 3s is longer than the interval 2s",
            "vips[web].health_check.rise: must be at least 1",
            "vips[web].health_check.fall: must be at least 1",
            r#"vips[web].health_check.path: only used by http and https checks (type is "tcp")"#,
            r#"vips[web].health_check.tls_verify: only used by https checks (type is "tcp")"#,
        ]
    );

    let mut c = base();
    let hc = &mut c.vips[0].health_check;
    hc.kind = CheckType::Http;
    hc.interval = std::time::Duration::ZERO;
    hc.timeout = std::time::Duration::ZERO;
    hc.path = Some("healthz".into());
    hc.expect_status = Some(StatusRange {
        low: 200,
        high: 700,
    });
    hc.host = Some("".into());
    assert_eq!(
        problems_without_host(&c),
        [
            "vips[web].health_check.interval: must be longer than 0",
            "vips[web].health_check.timeout: must be longer than 0",
            r#"vips[web].health_check.path: "healthz" must start with "/" and contain no spaces"#,
            r#"vips[web].health_check.expect_status: "200-700" is not a status range within 100-599"#,
            r#"vips[web].health_check.host: "" is not a valid Host header"#,
        ]
    );
}

#[test]
fn health_check_needs_a_port_when_the_vip_serves_all_ports() {
    let mut c = base();
    c.vips[0].port = 0;
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].health_check.port: required because the VIP serves all ports (port 0)"]
    );
    c.vips[0].health_check.kind = CheckType::None;
    assert!(problems_without_host(&c).is_empty());
    c.vips[0].health_check.kind = CheckType::Tunnel;
    c.vips[0].health_check.port = Some(0);
    assert_eq!(
        problems_without_host(&c),
        ["vips[web].health_check.port: 0 is not a port to probe"]
    );
    c.vips[0].health_check.port = Some(8080);
    assert!(problems_without_host(&c).is_empty());
}

#[test]
fn capacities() {
    let mut c = base();
    c.max_vips = 0;
    c.conn_table_size = 0;
    c.max_backends = 2;
    assert_eq!(
        problems_without_host(&c),
        [
            "conn_table_size: must be at least 1",
            "max_vips: must be at least 1",
            "vips: 1 VIPs exceed max_vips (0)",
            "vips: 3 backends in all (sorry backends included) exceed max_backends (2)",
        ]
    );
}

#[test]
fn backend_addresses_shared_by_vips_count_once() {
    let mut c = base();
    let mut second = c.vips[0].clone();
    second.name = "web2".into();
    second.port = 81;
    second.backends.pop();
    second.all_down = AllDown::Sorry;
    second.sorry_backend = Some(ip("198.18.3.4"));
    c.vips.push(second);
    // 6 backends (web's 3, web2's 2 and its sorry backend), 3 addresses.
    c.max_backend_addresses = Some(3);
    assert!(problems_without_host(&c).is_empty(), "{:?}", problems_without_host(&c));
    c.vips[1].backends.push(backend("198.18.3.9"));
    assert_eq!(
        problems_without_host(&c),
        ["vips: 4 distinct backend addresses (sorry backends included) exceed max_backend_addresses (3)"]
    );
    c.max_backend_addresses = Some(0);
    assert_eq!(
        problems_without_host(&c)[0],
        "max_backend_addresses: must be at least 1"
    );
    // The next hops a data plane keeps: the setting, within max_backends; unset, max_backends.
    c.max_backends = 5;
    c.max_backend_addresses = Some(9);
    assert_eq!(c.backend_address_limit(), 5);
    c.max_backend_addresses = Some(4);
    assert_eq!(c.backend_address_limit(), 4);
    c.max_backend_addresses = None;
    assert_eq!(c.backend_address_limit(), 5);
}

#[test]
fn pin_dir_must_be_absolute() {
    let mut c = base();
    c.pin_dir = "bpf/tula".into();
    assert_eq!(
        problems_without_host(&c),
        [r#"pin_dir: "bpf/tula" must be an absolute path"#]
    );
}

#[test]
fn vip_names_must_be_usable_in_paths() {
    let mut c = base();
    c.vips[0].name = "2web".into();
    let mut second = c.vips[0].clone();
    second.name = "web two".into();
    second.port = 443;
    c.vips.push(second);
    assert_eq!(
        problems_without_host(&c),
        [
            r#"vips[0].name: "2web" is not a valid VIP name: use a letter, then letters, digits, '-', '_' or '.', 63 at most"#,
            r#"vips[1].name: "web two" is not a valid VIP name: use a letter, then letters, digits, '-', '_' or '.', 63 at most"#,
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut c = base();
    c.ring_size = 100;
    c.interfaces.push("eth9".into());
    c.vips[0].backends[0].weight = 5000;
    c.vips[0].backends[1].port = Some(81);
    c.vips[0].backends[2].address = ip("::");
    let mut api = c.vips[0].clone();
    api.name = "api".into();
    api.address = ip("203.0.113.11");
    api.backends = vec![backend("198.18.3.2"), backend("198.18.3.2")];
    c.vips.push(api);
    let errors = c.validate(&host(&["eth0"], &["198.18.1.2"])).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "\
interfaces[1]: no interface named \"eth9\" on this host
ring_size: 100 is not prime
vips[web].backends[0].weight: 5000 is out of range 0..=1000
vips[web].backends[1].port: 81 differs from the VIP port 80; DSR cannot translate ports
vips[web].backends[2].address: :: cannot be a backend (unspecified)
vips[api].backends[1].address: 198.18.3.2 is listed twice (also backends[0])"
    );
    assert_eq!(errors.len(), 6);
}

#[test]
fn subnet_text_and_membership() {
    let s: Subnet = "198.18.20.0/24".parse().unwrap();
    assert_eq!(s.to_string(), "198.18.20.0/24");
    assert!(s.contains("198.18.20.255".parse().unwrap()));
    assert!(!s.contains("198.18.21.0".parse().unwrap()));
    let all: Subnet = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("203.0.113.1".parse().unwrap()));
    let host: Subnet = "198.18.20.7/32".parse().unwrap();
    assert!(host.contains("198.18.20.7".parse().unwrap()));
    assert!(!host.contains("198.18.20.6".parse().unwrap()));
    assert_eq!(
        "198.18.20.0/33".parse::<Subnet>().unwrap_err(),
        r#"invalid subnet "198.18.20.0/33": expected an address and prefix length, like 198.18.20.0/24 or 2001:db8::/64"#
    );
    let v6: Subnet = "2001:db8:3::/64".parse().unwrap();
    assert_eq!(v6.to_string(), "2001:db8:3::/64");
    assert!(v6.contains("2001:db8:3::ffff:1".parse().unwrap()));
    assert!(!v6.contains("2001:db8:4::1".parse().unwrap()));
    assert!(!all.contains("2001:db8:3::1".parse().unwrap()), "no address of the other family");
    assert!("2001:db8::/129".parse::<Subnet>().is_err());
    let _: BTreeSet<Subnet> = [s, host].into();
}

#[test]
fn path_mtu_names_an_interface_and_is_at_least_576() {
    let mut config = base();
    config.path_mtu.insert("eth0".into(), 1480);
    assert!(problems_without_host(&config).is_empty());
    config.path_mtu.insert("eth0".into(), 575);
    config.path_mtu.insert("eth9".into(), 1500);
    assert_eq!(
        problems_without_host(&config),
        [
            "path_mtu.eth0: 575 is below 576: clients could not be told an MTU they accept",
            "path_mtu.eth9: \"eth9\" is not one of the interfaces (eth0)",
        ]
    );
    let decoded = Config::from_toml_str(&format!("path_mtu = {{ eth0 = 1400 }}\n{BASE}")).unwrap();
    assert_eq!(decoded.path_mtu["eth0"], 1400);
}

#[test]
fn icmp_rate_and_burst_are_at_least_one() {
    let mut config = base();
    assert!(config.icmp.frag_needed, "on by default");
    config.icmp.rate = 0;
    config.icmp.burst = 0;
    assert_eq!(
        problems_without_host(&config),
        [
            "icmp.rate: must be at least 1",
            "icmp.burst: must be at least 1"
        ]
    );
    let decoded =
        Config::from_toml_str(&format!("{BASE}\n[icmp]\nfrag_needed = false\nrate = 5\n")).unwrap();
    assert_eq!(
        (
            decoded.icmp.frag_needed,
            decoded.icmp.rate,
            decoded.icmp.burst
        ),
        (false, 5, 50)
    );
}

#[test]
fn vips_on_one_address_agree_on_icmp_echo() {
    let mut config = base();
    assert!(config.vips[0].icmp_echo, "on by default");
    let mut dns = config.vips[0].clone();
    dns.name = "dns".into();
    dns.port = 53;
    dns.protocol = Protocol::Udp;
    dns.icmp_echo = false;
    config.vips.push(dns);
    assert_eq!(
        problems_without_host(&config),
        ["vips[dns].icmp_echo: false differs from vips[web] (true), which has the same address 203.0.113.10: ping answers for an address, so they must agree"]
    );
    config.vips[0].icmp_echo = false;
    assert!(problems_without_host(&config).is_empty());
}

/// `validate_touched`'s problems, sorted: it reports the rules across VIPs after each VIP's own.
fn touched_problems(config: &Config, touched: &[usize]) -> Vec<String> {
    let mut found = match config.validate_touched(&HostFacts::default(), touched) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.errors.iter().map(|e| e.to_string()).collect(),
    };
    found.sort();
    found
}

#[test]
fn validating_the_touched_vips_finds_what_validating_everything_finds() {
    let three = |v: u32| {
        let mut vip = base().vips[0].clone();
        vip.name = format!("web{v}");
        vip.address = ip(&format!("203.0.113.{}", 10 + v));
        vip.backends = (0..3)
            .map(|b| backend(&format!("198.18.{v}.{}", 2 + b)))
            .collect();
        vip
    };
    let mut good = base();
    good.vips = (0..4).map(three).collect();
    assert_eq!(touched_problems(&good, &[1]), Vec::<String>::new());
    // Each change touches VIP 1 only; the others passed before.
    let changes: Vec<(&str, Box<dyn Fn(&mut Config)>)> = vec![
        (
            "a bad weight",
            Box::new(|c| c.vips[1].backends[0].weight = 1_000_000),
        ),
        (
            "a backend twice",
            Box::new(|c| c.vips[1].backends[1].address = ip("198.18.1.2")),
        ),
        (
            "its name taken",
            Box::new(|c| c.vips[1].name = "web2".into()),
        ),
        (
            "its socket taken",
            Box::new(|c| c.vips[1].address = ip("203.0.113.12")),
        ),
        // VIP 3's backend now sits on VIP 1's address: an untouched VIP breaks.
        (
            "on a backend of another VIP",
            Box::new(|c| c.vips[1].address = ip("198.18.3.3")),
        ),
        (
            "a backend on another VIP's address",
            Box::new(|c| c.vips[1].backends[2].address = ip("203.0.113.10")),
        ),
        (
            "sorry without a backend",
            Box::new(|c| c.vips[1].all_down = AllDown::Sorry),
        ),
    ];
    for (what, change) in changes {
        let mut config = good.clone();
        change(&mut config);
        let mut everything = problems_without_host(&config);
        everything.sort();
        assert!(
            !everything.is_empty(),
            "{what}: the change should be refused"
        );
        assert_eq!(touched_problems(&config, &[1]), everything, "{what}");
    }
    // What it saves: an untouched VIP is not looked into again.
    let mut config = good.clone();
    config.vips[3].backends[0].weight = 1_000_000;
    assert_eq!(touched_problems(&config, &[1]), Vec::<String>::new());
    assert_eq!(touched_problems(&config, &[1, 3]).len(), 1);
}

#[test]
fn a_cluster_section_names_etcd_urls_and_the_node_and_is_not_shared() {
    let text = format!("{BASE}\n[cluster]\netcd = [\"http://198.18.1.1:2379\"]\nnode = \"lb1\"\n");
    let config = Config::from_toml_str(&text).unwrap();
    assert_eq!(problems_without_host(&config), Vec::<String>::new());
    let cluster = config.cluster.clone().unwrap();
    assert_eq!((cluster.node.as_str(), cluster.prefix.as_str()), ("lb1", "/tula"));
    // What a cluster shares has no node's own settings, and reads back the same.
    let shared = config.shared();
    assert_eq!(shared.cluster, None);
    assert!(shared.same_shared(&config));
    assert_eq!(Config::from_toml_str(&shared.to_toml_string()).unwrap(), shared);

    let mut bad = config.clone();
    bad.cluster = Some(tula_config::Cluster {
        etcd: vec!["https://198.18.1.1:2379".into(), "http://198.18.1.1:2379/v3".into()],
        node: "1lb".into(),
        prefix: "tula/".into(),
    });
    assert_eq!(
        problems_without_host(&bad),
        vec![
            "cluster.etcd[0]: \"https://198.18.1.1:2379\" is not an etcd client URL: use http://HOST:PORT (https is not supported)",
            "cluster.etcd[1]: \"http://198.18.1.1:2379/v3\" is not an etcd client URL: use http://HOST:PORT (https is not supported)",
            "cluster.node: \"1lb\" is not a valid node name: use a letter, then letters, digits, '-', '_' or '.', 63 at most",
            "cluster.prefix: \"tula/\" must start with '/' and not end with one, e.g. \"/tula\"",
        ]
    );
    bad.cluster.as_mut().unwrap().etcd.clear();
    assert!(problems_without_host(&bad)[0].starts_with("cluster.etcd: needs at least one etcd URL"));
}
