//! Numbered revisions: history, reading an old one back, rolling back to it
//! (recorded as a new revision), and diffs against the running config.

mod support;

use support::*;
use tula_control::ControlError;

const A: &str = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
backends = [{ address = "198.18.100.2" }, { address = "198.18.100.3" }]

[[vip]]
name = "api"
address = "203.0.113.12"
port = 443
backends = [{ address = "198.18.100.20" }]
"#;

#[test]
fn history_revisions_and_rollback() {
    let lab = Lab::new("revisions");
    let control = lab.start();
    let a = lab.config(A);
    let mut b = a.clone();
    b.vips[0].backends.push(tula_config::Backend {
        address: routed(4).into(),
        port: None,
        weight: 2,
        state: tula_config::BackendState::Active,
    });
    b.vips.remove(1);

    let first = lab
        .run(|| control.apply(a.clone(), "apply -f a.toml"))
        .unwrap();
    let held_a = lab.snapshot();
    let expected = vec![
        "+ vips[web].backends[198.18.100.4]".to_string(),
        "- vips[api]".to_string(),
    ];
    assert_eq!(control.diff(&b).summary(), expected);
    let second = lab
        .run(|| control.apply(b.clone(), "apply -f b.toml"))
        .unwrap();
    assert_eq!((first.number, second.number), (1, 2));
    assert_eq!(second.summary, expected, "the revision records its changes");
    assert_eq!(
        lab.snapshot().vips.len(),
        1,
        "the removed VIP is still programmed"
    );
    assert!(control.diff(&b).is_empty());

    let third = lab.run(|| control.rollback(1)).unwrap();
    assert_eq!(third.number, 3);
    assert_eq!(third.source, "rollback to 1");
    assert_eq!(control.running(), (3, a.clone()));
    assert_eq!(control.saved().unwrap(), a);
    // Same VIPs, rings and backends by address; the returning VIP and backend get
    // new ids, since freed ids are reused last.
    lab.snapshot()
        .assert_same(&held_a, Same::ByAddress, "after rolling back to revision 1");

    let history = control.history().unwrap();
    let listed: Vec<(u64, &str)> = history
        .iter()
        .map(|r| (r.number, r.source.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (1, "apply -f a.toml"),
            (2, "apply -f b.toml"),
            (3, "rollback to 1")
        ]
    );
    assert_eq!(control.revision(2).unwrap(), b);
    assert!(matches!(
        control.revision(42),
        Err(ControlError::NoSuchRevision(42))
    ));
    assert!(matches!(
        lab.run(|| control.rollback(42)),
        Err(ControlError::NoSuchRevision(42))
    ));

    // Applying the running config again records nothing new.
    let same = lab
        .run(|| control.apply(a.clone(), "apply -f a.toml"))
        .unwrap();
    assert_eq!(same.number, 3);
    assert_eq!(control.history().unwrap().len(), 3);
}
