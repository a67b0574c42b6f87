//! The maps at their default sizes fit comfortably on a small machine (the
//! figures in docs/DATAPLANE.md come from this test's output), and invalid
//! sizes are refused with the option and value named.

use tula_dataplane::{Dataplane, DataplaneError, LoadOptions};

#[test]
fn maps_at_the_default_sizes_take_under_a_gibibyte() {
    let dataplane = Dataplane::load(&LoadOptions::default()).expect("loading with the defaults");
    let memory = dataplane.map_memory().unwrap();
    let total: u64 = memory.iter().map(|(_, bytes)| bytes).sum();
    for (name, bytes) in &memory {
        println!("{name:<14} {:>12.1} KiB", *bytes as f64 / 1024.0);
    }
    println!(
        "{:<14} {:>10.1} MiB",
        "total",
        total as f64 / (1 << 20) as f64
    );
    assert!(memory.iter().all(|(_, bytes)| *bytes > 0), "{memory:?}");
    // Rings are stored at about 4 bytes a slot (issue 11: at most 4.5).
    let per_slot = dataplane.ring_bytes_per_slot().unwrap();
    println!("ring memory: {per_slot:.3} bytes a slot");
    assert!(per_slot <= 4.5, "{per_slot} bytes a ring slot");
    assert!(total < 1 << 30, "{total} bytes");
}

/// 100,000 backend ids over the default 4,096 addresses: the paths are
/// sized by addresses, the CPUs' copies by ids (docs/DATAPLANE.md's figures).
#[test]
fn paths_grow_with_backend_addresses_not_backend_ids() {
    let memory_of = |max_backend_addresses| {
        let options = LoadOptions {
            max_vips: 8,
            max_backends: 100_000,
            max_backend_addresses,
            ring_size: 251,
            conn_table_size: 4096,
            pin_dir: None,
        };
        let dataplane = Dataplane::load(&options).expect("loading");
        let memory = dataplane.map_memory().unwrap();
        let of = |name: &str| {
            memory
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, bytes)| *bytes)
                .unwrap()
        };
        (of("paths") + of("paths6"), of("cpu_backends"))
    };
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let (paths, copies) = memory_of(4096);
    let (paths_per_id, copies_per_id) = memory_of(100_000);
    println!(
        "100,000 backend ids: paths and paths6 {:.1} MiB for 4,096 addresses, {:.1} MiB for 100,000; cpu_backends {:.1} MiB",
        mib(paths),
        mib(paths_per_id),
        mib(copies)
    );
    assert_eq!(copies, copies_per_id, "the copies are per id either way");
    assert!(
        paths * 10 < paths_per_id,
        "{paths} bytes of paths for 4,096 addresses"
    );
}

#[test]
fn invalid_sizes_are_refused_by_name() {
    let cases = [
        (
            LoadOptions {
                ring_size: 65536,
                ..LoadOptions::default()
            },
            "ring_size = 65536",
        ),
        (
            LoadOptions {
                max_vips: 0,
                ..LoadOptions::default()
            },
            "max_vips = 0",
        ),
        (
            LoadOptions {
                max_backends: 0,
                ..LoadOptions::default()
            },
            "max_backends = 0",
        ),
        (
            LoadOptions {
                max_backend_addresses: 0,
                ..LoadOptions::default()
            },
            "max_backend_addresses = 0",
        ),
        (
            LoadOptions {
                conn_table_size: 0,
                ..LoadOptions::default()
            },
            "conn_table_size = 0",
        ),
        (
            LoadOptions {
                max_vips: 10_000_000,
                ring_size: 65537,
                ..LoadOptions::default()
            },
            "ring_size = 65537",
        ),
    ];
    for (options, named) in cases {
        let error = Dataplane::load(&options).err().expect("refused");
        assert!(
            matches!(error, DataplaneError::InvalidOption { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(named), "{error}");
    }
}
