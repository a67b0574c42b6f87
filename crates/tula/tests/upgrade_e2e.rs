//! Upgrading the data plane without dropping a flow, on the lab network: the
//! balancer of an older build (the real object of map layout 2, whose
//! connection table is an LRU hash of flows) forwards an established TCP
//! connection; the daemon of this build (layout 3, set-associative buckets)
//! starts, moves the pinned data plane onto its own maps and program under
//! the same XDP links, and the connection goes on to the same backend, even
//! once that backend is drained so that only the connection table sends it
//! there. The counters carry over.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tula_lab::topology::{Topology, VIP_L3, VIP_PORT};

mod support;
use support::TestLab;

/// bpf/obj/balancer.o as committed at a7b9591, the last build of map layout 2.
const LAYOUT2_OBJECT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tula-dataplane/tests/fixtures/balancer-layout2.o"
));

fn vip() -> SocketAddr {
    (VIP_L3, VIP_PORT).into()
}

fn tx_counter(lab: &TestLab) -> u64 {
    let stats: Value = serde_json::from_str(&lab.tula(&["stats", "--json"]).unwrap()).unwrap();
    stats["counters"]["tx"]
        .as_u64()
        .unwrap_or_else(|| panic!("no tx counter: {stats}"))
}

#[test]
fn an_upgrade_across_a_connection_table_layout_change_keeps_established_flows() {
    let lab = TestLab::up("upgrade", 3);
    let client_ns = tula_net::Netns::open(&lab.topology.ns_client()).unwrap();
    let pin_dir = tula_lab::balancer::pin_dir(&lab.topology);
    let pins = pin_dir.to_string_lossy().to_string();
    client_ns
        .run(|| {
            for _ in 0..50 {
                tula_lab::http::get(vip(), Duration::from_secs(5)).unwrap();
            }
        })
        .unwrap();
    let tx_before = tx_counter(&lab);

    // The older build takes over the pinned data plane, as if it had been running all along.
    lab.stop_balancer();
    let older = tula_dataplane::Build {
        object: LAYOUT2_OBJECT,
        layout_version: 2,
    };
    // From another namespace the interfaces' indexes mean nothing: the switch
    // fails part way and leaves the pinned data plane as it was.
    let refused = tula_dataplane::switch_build(&pin_dir, &older).unwrap_err();
    assert!(refused.to_string().contains("tx_ports"), "{refused}");
    assert!(!pin_dir
        .with_file_name(format!(
            "{}-upgrade",
            pin_dir.file_name().unwrap().to_string_lossy()
        ))
        .exists());
    let status = lab
        .tula(&["dataplane", "status", "--pin-dir", &pins])
        .unwrap();
    assert!(status.contains("adopts them as they are"), "{status}");
    // In the balancer's namespace: tx_ports entries name interfaces by index there.
    let lb_ns = tula_net::Netns::open(&lab.topology.ns_lb()).unwrap();
    let switched = lb_ns
        .run(|| tula_dataplane::switch_build(&pin_dir, &older))
        .unwrap()
        .unwrap();
    assert_eq!((switched.from_layout, switched.to_layout), (tula_dataplane::abi::LAYOUT_VERSION, 2));
    assert_eq!(switched.interfaces, ["eth0", "eth1"]);
    let status = lab
        .tula(&["dataplane", "status", "--pin-dir", &pins])
        .unwrap();
    assert!(
        status.contains("pinned      layout version 2, ring_size 65537, attached to eth0, eth1"),
        "{status}"
    );
    assert!(
        status.contains("the daemon moves them onto this build, keeping flows and counters"),
        "{status}"
    );

    // A connection established through the older build, and more traffic.
    let (mut conn, first) = client_ns
        .run(|| {
            let mut conn = tula_lab::http::Client::connect(vip(), Duration::from_secs(5)).unwrap();
            let first = conn.request("/", None, true).unwrap();
            assert_eq!(conn.request("/", None, true).unwrap(), first);
            for _ in 0..20 {
                tula_lab::http::get(vip(), Duration::from_secs(5)).unwrap();
            }
            (conn, first)
        })
        .unwrap();
    let mine: u8 = first.trim().trim_start_matches("be").parse().unwrap();

    // This build's daemon starts and moves the data plane onto its own layout.
    lab.restart_balancer().unwrap();
    let log = lab.log("lb");
    assert!(
        log.contains("moved the pinned data plane onto this build"),
        "{log}"
    );
    let status = lab
        .tula(&["dataplane", "status", "--pin-dir", &pins])
        .unwrap();
    let layout = tula_dataplane::abi::LAYOUT_VERSION;
    assert!(
        status.contains(&format!(
            "pinned      layout version {layout}, ring_size 65537, attached to eth0, eth1"
        )),
        "{status}"
    );
    assert!(status.contains("adopts them as they are"), "{status}");
    let tx_after = tx_counter(&lab);
    assert!(
        tx_after >= tx_before + 60,
        "the counters did not carry over: tx {tx_before} before, {tx_after} after 22 more requests"
    );

    // Only the connection table can send the flow to its backend once it is drained.
    let address = Topology::backend_addr(mine).to_string();
    lab.tula(&["backend", "drain", "web", &address]).unwrap();
    client_ns
        .run(|| {
            assert_eq!(
                conn.request("/", None, true).unwrap(),
                first,
                "the flow changed backend"
            );
            for _ in 0..30 {
                let who = tula_lab::http::get(vip(), Duration::from_secs(5)).unwrap();
                assert_ne!(who, first, "a new flow went to the drained backend");
            }
            assert_eq!(conn.request("/", None, true).unwrap(), first);
        })
        .unwrap();
}
