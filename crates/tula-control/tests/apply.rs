//! Save and apply against the real data plane: validation stops everything,
//! a config is programmed as declared, backend changes move only their own
//! ring slots, untouched VIPs are not rewritten, a data-plane failure rolls
//! back to exactly what ran before, and health takes a backend out and back.

mod support;

use std::net::{IpAddr, SocketAddrV4};

use support::*;
use tula_control::ControlError;
use tula_dataplane::{round_robin_ring, Dsr, Scheduler};
use tula_maglev::{Ring, RingBackend};

const WEB_AND_DNS: &str = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [
  { address = "198.18.100.2" },
  { address = "198.18.100.3" },
  { address = "198.18.100.4", weight = 2 },
  { address = "198.18.100.5", state = "drain" },
  { address = "198.18.100.6", state = "disabled" },
]

[[vip]]
name = "dns"
address = "203.0.113.11"
port = 53
protocol = "udp"
dsr_type = "l2"
scheduler = "source-hash"
health_check = { type = "none" }
backends = [{ address = "198.18.0.10" }, { address = "198.18.0.11" }]
"#;

#[test]
fn validation_errors_stop_apply_with_nothing_programmed() {
    let lab = Lab::new("invalid");
    let control = lab.start();
    let bad = lab.config_with(
        "",
        r#"
        [[vip]]
        name = "web"
        address = "203.0.113.10"
        port = 80
        backends = [{ address = "198.18.100.2", port = 81, weight = 1001 }]
        "#,
    );
    let mut bad = bad;
    bad.interfaces.push("eth9".into());
    let invalid = |result: Result<tula_control::RevisionInfo, ControlError>| match result {
        Err(ControlError::Invalid(errors)) => {
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        }
        other => panic!("expected ControlError::Invalid, got {other:?}"),
    };

    let errors = lab.run(|| invalid(control.apply(bad.clone(), "test")));
    assert_eq!(
        errors,
        vec![
            "interfaces[1]: no interface named \"eth9\" on this host".to_string(),
            "vips[web].backends[0].port: 81 differs from the VIP port 80; DSR cannot translate ports".to_string(),
            "vips[web].backends[0].weight: 1001 is out of range 0..=1000".to_string(),
        ],
        "every problem, at once"
    );
    assert!(!lab.pinned(), "an invalid first apply loaded a data plane");
    assert_eq!(control.running().0, 0);
    assert!(control.history().unwrap().is_empty());
    assert!(
        control.saved().is_err(),
        "an invalid apply wrote the config file"
    );

    // With a config running, an invalid one changes nothing at all.
    let good = lab.config(WEB_AND_DNS);
    let first = lab.run(|| control.apply(good.clone(), "test")).unwrap();
    let before = lab.snapshot();
    let errors = lab.run(|| invalid(control.apply(bad.clone(), "test")));
    assert_eq!(errors.len(), 3);
    lab.snapshot().assert_same(
        &before,
        Same::Exactly,
        "an invalid apply changed the data plane",
    );
    assert_eq!(control.running(), (first.number, good.clone()));
    assert_eq!(control.saved().unwrap(), good);
    assert_eq!(control.history().unwrap().len(), 1);
}

#[test]
fn apply_programs_vips_backends_and_rings() {
    let lab = Lab::new("programs");
    let control = lab.start();
    let config = lab.config(WEB_AND_DNS);
    let info = lab
        .run(|| control.apply(config.clone(), "apply -f web.toml"))
        .unwrap();
    assert_eq!(info.number, 1);
    assert_eq!(info.source, "apply -f web.toml");
    assert!(
        info.summary.contains(&"+ vips[web]".to_string()),
        "{:?}",
        info.summary
    );

    let held = lab.snapshot();
    assert_eq!(held.attached, vec!["lb0".to_string()]);
    assert!(lab.run(|| xdp_attached("lb0")), "no XDP program on lb0");

    let web = held.vip("203.0.113.10".parse().unwrap(), 80);
    let dns = held.vip("203.0.113.11".parse().unwrap(), 53);
    assert_eq!(
        (web.spec.dsr, web.spec.scheduler),
        (Dsr::L3Ipip, Scheduler::Maglev)
    );
    assert_eq!(
        (dns.spec.dsr, dns.spec.scheduler),
        (Dsr::L2, Scheduler::SourceHash)
    );
    assert_ne!(web.spec.id, dns.spec.id);

    let id = |n: u8| held.id_of(routed(n));
    let alive = |n: u8| held.backends[&id(n)].alive;
    assert!(
        alive(2) && alive(3) && alive(4),
        "active backends are alive"
    );
    assert!(alive(5), "a draining backend stays alive for its flows");
    assert!(!alive(6), "a disabled backend is not alive");
    assert_eq!(held.backends.len(), 7);

    // The ring is exactly the Maglev ring of the active backends, with their weights.
    let members: Vec<RingBackend> = [(2, 1), (3, 1), (4, 2)]
        .into_iter()
        .map(|(n, weight)| RingBackend {
            id: id(n),
            key: routed(n).to_string(),
            weight,
        })
        .collect();
    assert_eq!(web.slots, Ring::build(&members, 4093).unwrap().slots());
    assert_eq!(
        share(&web.slots, id(5)) + share(&web.slots, id(6)),
        0,
        "drain and disabled take no slots"
    );
    let dns_ids = [
        held.id_of("198.18.0.10".parse().unwrap()),
        held.id_of("198.18.0.11".parse().unwrap()),
    ];
    assert!(dns.slots.iter().all(|s| dns_ids.contains(s)));

    // Traffic flows, and status counts it.
    let vip = SocketAddrV4::new("203.0.113.10".parse().unwrap(), 80);
    let client = SocketAddrV4::new("198.18.200.7".parse().unwrap(), 40000);
    let backend = lab.run(|| send(&lab.dataplane(), client, vip));
    assert!(
        [routed(2), routed(3), routed(4)].contains(&backend),
        "sent to {backend}"
    );
    control.sample_flows().unwrap();
    let status = control.status().unwrap();
    let web_status = status.iter().find(|v| v.name == "web").unwrap();
    assert_eq!(web_status.packets, 2, "the SYN and the ACK");
    assert_eq!(web_status.backends.len(), 5);
    let chosen = web_status
        .backends
        .iter()
        .find(|b| b.address == IpAddr::V4(backend))
        .unwrap();
    assert_eq!((chosen.active_flows, chosen.table_entries, chosen.packets), (1, 1, 2));
    assert!(chosen.last_flow_seen.is_some());
    assert_eq!((web_status.active_flows, web_status.table_entries), (1, 1));
    assert!(chosen.healthy);
    assert_eq!(
        web_status
            .backends
            .iter()
            .map(|b| b.active_flows)
            .sum::<u64>(),
        1
    );
    assert_eq!(
        control
            .counters()
            .unwrap()
            .get(tula_dataplane::Counter::LruMiss),
        1
    );
}

#[test]
fn round_robin_vips_get_their_scheduler_and_an_interleaved_ring() {
    let lab = Lab::new("rr");
    let control = lab.start();
    let config = lab.config(
        r#"
        [[vip]]
        name = "rr"
        address = "203.0.113.10"
        port = 80
        scheduler = "round-robin"
        health_check = { type = "none" }
        backends = [
          { address = "198.18.100.2", weight = 5 },
          { address = "198.18.100.3" },
          { address = "198.18.100.4" },
          { address = "198.18.100.5", state = "drain" },
        ]

        [[vip]]
        name = "wrr"
        address = "203.0.113.11"
        port = 80
        scheduler = "weighted-round-robin"
        health_check = { type = "none" }
        backends = [{ address = "198.18.100.2" }, { address = "198.18.100.3", weight = 3 }]
        "#,
    );
    lab.run(|| control.apply(config.clone(), "test")).unwrap();
    let held = lab.snapshot();
    let rr = held.vip("203.0.113.10".parse().unwrap(), 80);
    let wrr = held.vip("203.0.113.11".parse().unwrap(), 80);
    assert_eq!(rr.spec.scheduler, Scheduler::RoundRobin);
    assert_eq!(wrr.spec.scheduler, Scheduler::WeightedRoundRobin);

    // Each backend id is per VIP: look them up by address in that VIP's ring.
    let ids_in = |slots: &[u32]| -> Vec<(u32, std::net::Ipv4Addr)> {
        let mut seen = Vec::new();
        for id in slots {
            let std::net::IpAddr::V4(addr) = held.backends[id].addr else {
                panic!("the lab's backends are IPv4");
            };
            if !seen.contains(&(*id, addr)) {
                seen.push((*id, addr));
            }
        }
        seen
    };
    // Round robin: the active backends take turns, one each, the weight ignored; the drained one none.
    let rr_members = ids_in(&rr.slots);
    assert_eq!(
        rr_members.iter().map(|m| m.1).collect::<Vec<_>>(),
        [routed(2), routed(3), routed(4)]
    );
    let members = |weights: &[(u32, std::net::Ipv4Addr, u32)]| -> Vec<RingBackend> {
        weights
            .iter()
            .map(|&(id, addr, weight)| RingBackend {
                id,
                key: addr.to_string(),
                weight,
            })
            .collect()
    };
    let rr_expected = members(
        &rr_members
            .iter()
            .map(|&(id, a)| (id, a, 1))
            .collect::<Vec<_>>(),
    );
    assert_eq!(rr.slots, round_robin_ring(&rr_expected, 4093));
    assert_eq!(
        &rr.slots[..4],
        &[
            rr_members[0].0,
            rr_members[1].0,
            rr_members[2].0,
            rr_members[0].0
        ]
    );

    // Weighted: 1:3.
    let wrr_members = ids_in(&wrr.slots);
    let (light, heavy) = (wrr_members[1], wrr_members[0]);
    assert_eq!((light.1, heavy.1), (routed(2), routed(3)));
    let wrr_expected = members(&[(light.0, light.1, 1), (heavy.0, heavy.1, 3)]);
    assert_eq!(wrr.slots, round_robin_ring(&wrr_expected, 4093));
    assert_eq!(
        share(&wrr.slots, heavy.0),
        3 * share(&wrr.slots, light.0) + 1
    );

    // New flows rotate. Each CPU has its own cursor and the test thread may
    // move between them, so only the spread is certain: 30 flows, 10 each
    // give or take one per CPU.
    let vip = SocketAddrV4::new("203.0.113.10".parse().unwrap(), 80);
    let sent = lab.run(|| {
        let dataplane = lab.dataplane();
        let mut sent = std::collections::BTreeMap::new();
        for port in 0..30 {
            let client = SocketAddrV4::new("198.18.200.7".parse().unwrap(), 40000 + port);
            *sent.entry(send(&dataplane, client, vip)).or_insert(0) += 1;
        }
        sent
    });
    assert_eq!(
        sent.keys().copied().collect::<Vec<_>>(),
        [routed(2), routed(3), routed(4)]
    );
    assert!(sent.values().all(|&n| (8..=12).contains(&n)), "{sent:?}");

    // A restart finds the rings it expects and rewrites neither.
    drop(control);
    let before = lab.snapshot();
    let _control = lab.start();
    lab.snapshot().assert_same(
        &before,
        Same::Exactly,
        "a restart rewrote a round-robin VIP",
    );
}

/// Slots that changed to or from something other than `moved` (Maglev's small extra disturbance).
fn disturbance(before: &[u32], after: &[u32], moved: u32) -> usize {
    changed(before, after)
        .into_iter()
        .filter(|&i| before[i] != moved && after[i] != moved)
        .count()
}

#[test]
fn backend_changes_move_only_their_slots() {
    let lab = Lab::new("slots");
    let control = lab.start();
    let vips = |web_backends: &str| {
        format!(
            r#"
            [[vip]]
            name = "web"
            address = "203.0.113.10"
            port = 80
            backends = [{web_backends}]
            [[vip]]
            name = "api"
            address = "203.0.113.12"
            port = 443
            backends = [{{ address = "198.18.100.20" }}, {{ address = "198.18.100.21" }}]
            "#
        )
    };
    let apply = |web_backends: &str| {
        lab.run(|| control.apply(lab.config(&vips(web_backends)), "test"))
            .unwrap();
        lab.snapshot()
    };
    let web = |s: &Snapshot| s.vip("203.0.113.10".parse().unwrap(), 80).clone();
    let api = |s: &Snapshot| s.vip("203.0.113.12".parse().unwrap(), 443).clone();

    let base = r#"{ address = "198.18.100.2" }, { address = "198.18.100.3" }, { address = "198.18.100.4" },
                  { address = "198.18.100.5" }, { address = "198.18.100.6" }"#;
    let s0 = apply(base);

    // Adding a backend: the slots that change are (almost all) the ones it takes.
    let added = format!(r#"{base}, {{ address = "198.18.100.7" }}"#);
    let s1 = apply(&added);
    let new_id = s1.id_of(routed(7));
    let (r0, r1) = (web(&s0).slots, web(&s1).slots);
    let taken = share(&r1, new_id);
    let extra = disturbance(&r0, &r1, new_id);
    println!("add: the new backend took {taken} slots, {extra} other slots moved");
    assert!(
        taken > 4093 / 6 - 50,
        "the new backend took only {taken} slots"
    );
    assert!(
        extra * 20 <= taken,
        "{extra} slots moved between old backends (new backend took {taken})"
    );
    for n in 2..=6 {
        assert_eq!(
            s1.id_of(routed(n)),
            s0.id_of(routed(n)),
            "backend {} changed id",
            routed(n)
        );
    }
    assert!(
        api(&s1) == api(&s0),
        "the untouched VIP was rewritten (ring index or slots)"
    );
    assert_ne!(
        web(&s1).ring_index,
        web(&s0).ring_index,
        "the changed ring was not swapped"
    );

    // Removing one: its slots move, and little else.
    let removed_id = s1.id_of(routed(3));
    let without = r#"{ address = "198.18.100.2" }, { address = "198.18.100.4" }, { address = "198.18.100.5" },
                     { address = "198.18.100.6" }, { address = "198.18.100.7" }"#;
    let s2 = apply(without);
    let r2 = web(&s2).slots;
    let held = share(&r1, removed_id);
    let extra = disturbance(&r1, &r2, removed_id);
    println!("remove: the removed backend held {held} slots, {extra} other slots moved");
    assert_eq!(share(&r2, removed_id), 0);
    assert!(
        extra * 20 <= held,
        "{extra} other slots moved (removed backend held {held})"
    );
    assert!(
        !s2.backends.contains_key(&removed_id),
        "the removed backend is still in the table"
    );
    assert!(api(&s2) == api(&s0), "the untouched VIP was rewritten");

    // Re-weighting one from 1 to 3: the slots it gains move, and little else.
    let reweighted = without.replace(
        r#"{ address = "198.18.100.4" }"#,
        r#"{ address = "198.18.100.4", weight = 3 }"#,
    );
    let s3 = apply(&reweighted);
    let r3 = web(&s3).slots;
    let id4 = s3.id_of(routed(4));
    let gained = share(&r3, id4) - share(&r2, id4);
    let extra = disturbance(&r2, &r3, id4);
    println!("reweight 1 -> 3: the backend gained {gained} slots, {extra} other slots moved");
    assert!(
        gained > share(&r2, id4),
        "tripling the weight gained only {gained} slots"
    );
    assert!(
        extra * 20 <= gained,
        "{extra} other slots moved (gained {gained})"
    );
    assert!(api(&s3) == api(&s0), "the untouched VIP was rewritten");

    // Draining it: out of the ring but still alive.
    let drained = without.replace(
        r#"{ address = "198.18.100.4" }"#,
        r#"{ address = "198.18.100.4", state = "drain" }"#,
    );
    let s4 = apply(&drained);
    assert_eq!(share(&web(&s4).slots, id4), 0);
    assert!(
        s4.backends[&id4].alive,
        "a draining backend must stay alive"
    );
    assert!(api(&s4) == api(&s0), "the untouched VIP was rewritten");
}

const ROLLBACK_BASE: &str = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{ address = "198.18.100.2" }, { address = "198.18.100.3" }, { address = "198.18.100.4" }]

[[vip]]
name = "api"
address = "203.0.113.12"
port = 443
backends = [{ address = "198.18.100.20" }, { address = "198.18.100.21" }]
"#;

#[test]
fn a_config_beyond_the_loaded_data_plane_is_refused_and_changes_nothing() {
    let lab = Lab::new("rollback");
    let control = lab.start();
    // The data plane is loaded with 4 VIP ids and 8 backend ids.
    let small = "max_vips = 4\nmax_backends = 8\n";
    let base = lab.config_with(small, ROLLBACK_BASE);
    lab.run(|| control.apply(base.clone(), "test")).unwrap();
    let before = lab.snapshot();
    let api_before = before.vip("203.0.113.12".parse().unwrap(), 443).clone();

    // Refused before anything is programmed (the capacity error names the
    // limit); a data-plane failure part way is rolled back, see the
    // injected-failure tests in src/writer_tests.rs.
    let expect_refused = |config: tula_config::Config, needle: &str| {
        match lab.run(|| control.apply(config, "test")) {
            Err(ControlError::Capacity(error)) => {
                let message = error.to_string();
                assert!(
                    message.contains(needle),
                    "message {message:?} does not name {needle:?}"
                );
            }
            other => panic!("expected a capacity error, got {other:?}"),
        }
        let after = lab.snapshot();
        after.assert_same(&before, Same::Contents, "after the refusal");
        assert!(
            after.vip("203.0.113.12".parse().unwrap(), 443) == &api_before,
            "an untouched VIP was rewritten"
        );
        assert_eq!(control.running(), (1, base.clone()));
        assert_eq!(control.saved().unwrap(), base);
        assert_eq!(control.history().unwrap().len(), 1);
    };

    // A config that asks for more VIPs than the loaded data plane has ids for.
    let mut more_vips = lab.config_with("max_vips = 16\nmax_backends = 8\n", ROLLBACK_BASE);
    more_vips.vips[0].backends[0].weight = 5;
    for (i, n) in [(20u8, 30u8), (21, 31), (22, 32)] {
        let mut vip = more_vips.vips[1].clone();
        vip.name = format!("extra{i}");
        vip.address = format!("203.0.113.{i}").parse().unwrap();
        vip.backends = vec![more_vips.vips[1].backends[0].clone()];
        vip.backends[0].address = routed(n).into();
        more_vips.vips.push(vip);
    }
    expect_refused(
        more_vips,
        "all 4 are in use (max_vips of the loaded data plane)",
    );

    // More backends than the loaded backend table.
    let mut more_backends = lab.config_with("max_vips = 4\nmax_backends = 16\n", ROLLBACK_BASE);
    for n in 40..46 {
        let mut backend = more_backends.vips[0].backends[0].clone();
        backend.address = routed(n).into();
        more_backends.vips[0].backends.push(backend);
    }
    expect_refused(
        more_backends,
        "all 8 are in use (max_backends of the loaded data plane)",
    );

    // And the next valid change applies normally.
    let mut reweighted = base.clone();
    reweighted.vips[0].backends[1].weight = 4;
    let info = lab.run(|| control.apply(reweighted, "test")).unwrap();
    assert_eq!(info.number, 2);
    assert_eq!(
        info.summary,
        vec!["~ vips[web].backends[198.18.100.3].weight: 1 -> 4".to_string()]
    );
}

#[test]
fn a_change_holding_more_backend_addresses_meanwhile_than_the_next_hops_is_refused() {
    let lab = Lab::new("nexthops");
    let control = lab.start();
    // 8 backend ids, 5 next hops: web's 3 servers and api's 2 take them all.
    let limits = "max_vips = 4\nmax_backends = 8\nmax_backend_addresses = 5\n";
    let base = lab.config_with(limits, ROLLBACK_BASE);
    lab.run(|| control.apply(base.clone(), "test")).unwrap();
    let before = lab.snapshot();
    // api moves to 2 new servers: 5 addresses once applied, 7 while old and new are held.
    let mut swapped = base.clone();
    for (backend, n) in swapped.vips[1].backends.iter_mut().zip([30, 31]) {
        backend.address = routed(n).into();
    }
    match lab.run(|| control.apply(swapped.clone(), "test")) {
        Err(ControlError::Capacity(error)) => {
            assert_eq!(error.key, "7 distinct backend addresses", "{error}");
            assert_eq!((error.limit, error.once_applied), (5, Some(5)), "{error}");
        }
        other => panic!("expected a capacity error, got {other:?}"),
    }
    lab.snapshot()
        .assert_same(&before, Same::Contents, "after the refusal");
    assert_eq!(control.running(), (1, base.clone()));
    // In two steps it fits: api goes, then comes back on its new servers.
    let mut web_only = base.clone();
    web_only.vips.truncate(1);
    lab.run(|| control.apply(web_only, "test")).unwrap();
    lab.run(|| control.apply(swapped, "test")).unwrap();
    let dataplane = lab.dataplane();
    assert_eq!(dataplane.backend_addresses(), 5);
    assert!(dataplane.holds_backend_address(routed(30).into()));
    assert!(!dataplane.holds_backend_address(routed(20).into()));
}

#[test]
fn an_unhealthy_backend_leaves_the_ring_and_comes_back() {
    let lab = Lab::new("health");
    let control = lab.start();
    lab.run(|| control.apply(lab.config(ROLLBACK_BASE), "test"))
        .unwrap();
    let before = lab.snapshot();
    let web = |s: &Snapshot| s.vip("203.0.113.10".parse().unwrap(), 80).clone();
    let id3 = before.id_of(routed(3));
    let address: IpAddr = routed(3).into();

    lab.run(|| control.set_health("web", address, false))
        .unwrap();
    let down = lab.snapshot();
    assert!(
        !down.backends[&id3].alive,
        "an unhealthy backend must not be alive (its flows re-hash)"
    );
    assert_eq!(share(&web(&down).slots, id3), 0);
    let extra = disturbance(&web(&before).slots, &web(&down).slots, id3);
    assert!(
        extra * 20 <= share(&web(&before).slots, id3),
        "{extra} other slots moved"
    );
    let status = control.status().unwrap();
    let backend = status[0]
        .backends
        .iter()
        .find(|b| b.address == address)
        .unwrap();
    assert!(!backend.healthy);
    assert_eq!(
        control.history().unwrap().len(),
        1,
        "health is not a config change"
    );

    lab.run(|| control.set_health("web", address, true))
        .unwrap();
    lab.snapshot()
        .assert_same(&before, Same::Contents, "after recovery");

    assert!(matches!(
        control.set_health("nope", address, false),
        Err(ControlError::NoSuchVip(_))
    ));
    assert!(matches!(
        control.set_health("web", "198.18.100.99".parse().unwrap(), false),
        Err(ControlError::NoSuchBackend { .. })
    ));
}

#[test]
fn all_down_policies_decide_where_new_flows_go() {
    let lab = Lab::new("alldown");
    let control = lab.start();
    let vips = |policy: &str| {
        let sorry = if policy == "sorry" {
            "sorry_backend = \"198.18.100.9\"\n"
        } else {
            ""
        };
        format!(
            r#"
            [[vip]]
            name = "web"
            address = "203.0.113.10"
            port = 80
            all_down = "{policy}"
            {sorry}backends = [{{ address = "198.18.100.2" }}, {{ address = "198.18.100.3" }}]
            "#
        )
    };
    let vip = SocketAddrV4::new("203.0.113.10".parse().unwrap(), 80);
    let client = |port| SocketAddrV4::new("198.18.200.7".parse().unwrap(), port);
    let ring = |s: &Snapshot| -> Vec<std::net::Ipv4Addr> {
        let mut members: Vec<_> = s
            .vip("203.0.113.10".parse().unwrap(), 80)
            .slots
            .iter()
            .filter(|&&id| id != tula_dataplane::EMPTY_SLOT)
            .map(|id| match s.backends[id].addr {
                std::net::IpAddr::V4(addr) => addr,
                other => panic!("the lab's backends are IPv4, not {other}"),
            })
            .collect();
        members.sort();
        members.dedup();
        members
    };
    let new_flows = || control.status().unwrap()[0].new_flows;
    let (b2, b3): (IpAddr, IpAddr) = (routed(2).into(), routed(3).into());

    // drop: nothing in the ring, a new flow is dropped.
    lab.run(|| control.apply(lab.config(&vips("drop")), "test"))
        .unwrap();
    lab.run(|| control.set_health_many(&[("web", b2, false), ("web", b3, false)]))
        .unwrap();
    assert!(ring(&lab.snapshot()).is_empty());
    assert_eq!(new_flows(), tula_control::NewFlows::Dropped);
    let action = lab.run(|| {
        let lb0 = tula_net::link("lb0").unwrap();
        lab.dataplane()
            .test_run(&syn(lb0.mac, client(41000), vip), Some(lb0.index))
            .unwrap()
            .0
    });
    assert_ne!(
        action,
        tula_dataplane::XdpAction::Tx,
        "a new flow was forwarded with every backend down"
    );

    // keep-last: .3 fails last, so it keeps the new flows, and is alive for them.
    lab.run(|| control.set_health_many(&[("web", b2, true), ("web", b3, true)]))
        .unwrap();
    lab.run(|| control.apply(lab.config(&vips("keep-last")), "test"))
        .unwrap();
    lab.run(|| control.set_health("web", b2, false)).unwrap();
    lab.run(|| control.set_health("web", b3, false)).unwrap();
    let snapshot = lab.snapshot();
    assert_eq!(ring(&snapshot), vec![routed(3)]);
    assert!(snapshot.backends[&snapshot.id_of(routed(3))].alive);
    assert!(!snapshot.backends[&snapshot.id_of(routed(2))].alive);
    assert_eq!(new_flows(), tula_control::NewFlows::KeptLast);
    assert_eq!(
        lab.run(|| send(&lab.dataplane(), client(41001), vip)),
        routed(3)
    );
    // .2 comes back: the ring is .2 alone, as normal.
    lab.run(|| control.set_health("web", b2, true)).unwrap();
    assert_eq!(ring(&lab.snapshot()), vec![routed(2)]);
    assert_eq!(new_flows(), tula_control::NewFlows::Backends);

    // sorry: the sorry backend alone takes new flows while both are down.
    lab.run(|| control.apply(lab.config(&vips("sorry")), "test"))
        .unwrap();
    let snapshot = lab.snapshot();
    assert_eq!(ring(&snapshot), vec![routed(2)], "with .3 still down");
    assert!(
        snapshot.backends[&snapshot.id_of(routed(9))].alive,
        "the sorry backend has an id and is alive"
    );
    lab.run(|| control.set_health("web", b2, false)).unwrap();
    assert_eq!(ring(&lab.snapshot()), vec![routed(9)]);
    assert_eq!(new_flows(), tula_control::NewFlows::Sorry);
    assert_eq!(
        lab.run(|| send(&lab.dataplane(), client(41002), vip)),
        routed(9)
    );
    assert_eq!(
        control.history().unwrap().len(),
        3,
        "health is not a config change"
    );
}

#[test]
fn ipv6_vips_and_ipv6_backends_of_an_ipv4_vip_are_programmed() {
    let lab = Lab::new("ipv6");
    let control = lab.start();
    let config = lab.config(
        r#"
        [[vip]]
        name = "web6"
        address = "2001:db8:113::10"
        port = 80
        health_check = { type = "none" }
        backends = [{ address = "2001:db8:100::2" }, { address = "2001:db8:100::3" }]

        [[vip]]
        name = "mixed"
        address = "203.0.113.12"
        port = 80
        health_check = { type = "none" }
        backends = [{ address = "2001:db8:100::4" }]
        "#,
    );
    lab.run(|| control.apply(config, "test")).unwrap();
    let held = lab.snapshot();
    let keys: Vec<String> = held.vips.keys().map(|key| key.to_string()).collect();
    assert_eq!(keys, ["tcp 203.0.113.12:80", "tcp [2001:db8:113::10]:80"]);
    let address = |text: &str| text.parse::<IpAddr>().unwrap();
    for (vip, backends) in [
        (&keys[1], &["2001:db8:100::2", "2001:db8:100::3"][..]),
        (&keys[0], &["2001:db8:100::4"][..]),
    ] {
        let (_, held_vip) = held
            .vips
            .iter()
            .find(|(key, _)| key.to_string() == *vip)
            .unwrap();
        let mut members: Vec<IpAddr> = held_vip
            .slots
            .iter()
            .map(|id| held.backends[id].addr)
            .collect();
        members.sort();
        members.dedup();
        let expected: Vec<IpAddr> = backends.iter().map(|a| address(a)).collect();
        assert_eq!(members, expected, "the ring of {vip}");
    }
}
