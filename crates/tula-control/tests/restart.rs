//! Restart without dropping traffic: a new Control adopts the pinned data
//! plane, keeps the connection table and the rings as they are (no ring is
//! rewritten when nothing changed), applies a config file edited while it was
//! down by touching only what the edit changed, and `unload` removes it all.

mod support;

use std::net::SocketAddrV4;

use support::*;

const CONFIG: &str = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{ address = "198.18.100.2" }, { address = "198.18.100.3" }, { address = "198.18.100.4", weight = 2 }]

[[vip]]
name = "api"
address = "203.0.113.12"
port = 443
backends = [{ address = "198.18.100.20" }, { address = "198.18.100.21" }]
"#;

fn web() -> SocketAddrV4 {
    SocketAddrV4::new("203.0.113.10".parse().unwrap(), 80)
}

fn client(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new("198.18.200.7".parse().unwrap(), port)
}

#[test]
fn a_restart_keeps_flows_and_rings_and_reprograms_nothing() {
    let lab = Lab::new("restart");
    let control = lab.start();
    let config = lab.config(CONFIG);
    lab.run(|| control.apply(config.clone(), "test")).unwrap();

    // Twenty flows through the balancer.
    let chosen: Vec<_> = lab.run(|| {
        let dataplane = lab.dataplane();
        (40000..40020)
            .map(|port| send(&dataplane, client(port), web()))
            .collect()
    });
    let held = lab.snapshot();
    let flows = conns(&lab.dataplane());
    assert_eq!(flows.len(), 20);
    control.sample_flows().unwrap();
    let status_before = control.status().unwrap();
    assert_eq!(
        status_before[0]
            .backends
            .iter()
            .map(|b| b.active_flows)
            .sum::<u64>(),
        20
    );

    // The daemon goes away (as after kill -9: nothing is torn down).
    drop(control);
    assert!(lab.pinned());
    assert!(
        lab.run(|| xdp_attached("lb0")),
        "stopping the daemon detached the balancer"
    );

    let control = lab.start();
    assert_eq!(control.running(), (1, config.clone()));
    lab.snapshot()
        .assert_same(&held, Same::Exactly, "after the restart");
    assert_eq!(
        conns(&lab.dataplane()),
        flows,
        "the restart changed the connection table"
    );
    let again: Vec<_> = lab.run(|| {
        let dataplane = lab.dataplane();
        (40000..40020)
            .map(|port| send(&dataplane, client(port), web()))
            .collect()
    });
    assert_eq!(again, chosen, "established flows changed backend");
    // Ids were kept, so status still finds each backend's flows.
    control.sample_flows().unwrap();
    let status_after = control.status().unwrap();
    let flows_by_backend = |s: &[tula_control::VipStatus]| {
        s[0].backends
            .iter()
            .map(|b| (b.address, b.active_flows))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        flows_by_backend(&status_after),
        flows_by_backend(&status_before)
    );
    assert_eq!(status_after[0].packets, 80, "twice 20 connections of two packets");
    assert_eq!(
        control.history().unwrap().len(),
        1,
        "a plain restart records no revision"
    );
    drop(control);

    // The operator edits the file while the daemon is down: start applies it
    // as a new revision, and only the web VIP's ring is rewritten.
    let edited = CONFIG.replace(
        r#"{ address = "198.18.100.4", weight = 2 }]"#,
        r#"{ address = "198.18.100.4", weight = 2 }, { address = "198.18.100.5" }]"#,
    );
    std::fs::write(&lab.options().config_path, lab.config_text("", &edited)).unwrap();
    let control = lab.start();
    let (revision, running) = control.running();
    assert_eq!(revision, 2);
    assert_eq!(running.vips[0].backends.len(), 4);
    let history = control.history().unwrap();
    assert!(
        history[1].source.starts_with("start: "),
        "{:?}",
        history[1].source
    );
    assert_eq!(
        history[1].summary,
        vec!["+ vips[web].backends[198.18.100.5]".to_string()]
    );
    let after = lab.snapshot();
    let api = |s: &Snapshot| s.vip("203.0.113.12".parse().unwrap(), 443).clone();
    assert!(api(&after) == api(&held), "the unchanged VIP was rewritten");
    assert_ne!(
        after.vip(*web().ip(), 80).ring_index,
        held.vip(*web().ip(), 80).ring_index
    );
    for n in [2, 3, 4, 20, 21] {
        assert_eq!(
            after.id_of(routed(n)),
            held.id_of(routed(n)),
            "backend {} changed id across the restart",
            routed(n)
        );
    }
    assert_eq!(
        conns(&lab.dataplane()),
        flows,
        "applying the edit flushed connections"
    );

    // An invalid file stops the start; the pinned data plane forwards on.
    drop(control);
    let config_path = lab.options().config_path;
    let good_text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        good_text.replace("port = 80", "port = 80\nprot = 81"),
    )
    .unwrap();
    match lab.run(|| tula_control::Control::start(lab.options())) {
        Err(tula_control::ControlError::Invalid(errors)) => {
            assert!(
                errors.errors[0].to_string().contains("unknown key `prot`"),
                "{errors}"
            )
        }
        other => panic!("an invalid config file started: {:?}", other.map(|_| ())),
    }
    assert!(
        lab.run(|| xdp_attached("lb0")),
        "a failed start detached the balancer"
    );
    assert_eq!(conns(&lab.dataplane()), flows);

    // A deleted file is written again from the last revision.
    std::fs::remove_file(&config_path).unwrap();
    let control = lab.start();
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), good_text);
    assert_eq!(control.running().0, 2);

    // Unloading removes programs, links and maps.
    lab.run(|| control.unload()).unwrap();
    assert!(!lab.pin_dir.exists(), "unload left the pin directory");
    assert!(
        !lab.run(|| xdp_attached("lb0")),
        "unload left the program on lb0"
    );
    assert_eq!(
        control.status().unwrap()[0].packets,
        0,
        "status after unload reads no data plane"
    );
}
