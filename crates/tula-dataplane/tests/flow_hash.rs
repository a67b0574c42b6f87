//! The Rust flow hash and ring indexing agree with the kernel's: with a ring
//! that holds a different backend in every slot, the backend the balancer
//! picks for a new flow is the one `flow_hash` + `ring_index` predict.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};

use support::*;
use tula_dataplane::{
    flow_hash, ring_index, source_hash, Dataplane, Dsr, Flow, LoadOptions, Protocol, Scheduler,
    VipSpec,
};

#[test]
fn the_balancer_picks_the_backend_rust_predicts() {
    in_lab("hash", |f| {
        // A bigger balancer than the fixture's: one backend per slot of a 509-slot ring.
        let options = LoadOptions {
            max_backends: 509,
            // The 250 addresses of routed_backend.
            max_backend_addresses: 250,
            ring_size: 509,
            ..small_options()
        };
        f.dataplane = Dataplane::load(&options).unwrap();
        f.dataplane
            .set_interface("lb0", &Default::default())
            .unwrap();
        let ring: Vec<u32> = (0..509).collect();
        for id in 0..509 {
            f.add_backend(id, routed_backend(1 + (id % 250) as u8));
        }
        let tcp_vip = vip_key(0, Protocol::Tcp);
        let udp_vip = vip_key(0, Protocol::Udp);
        let spec = |id, scheduler| VipSpec {
            id,
            dsr: Dsr::L3Ipip,
            scheduler,
            icmp_echo: true,
        };
        f.dataplane
            .set_vip(&tcp_vip, &spec(1, Scheduler::Maglev), &ring)
            .unwrap();
        f.dataplane
            .set_vip(&udp_vip, &spec(2, Scheduler::SourceHash), &ring)
            .unwrap();

        let mut slots_seen = std::collections::HashSet::new();
        for i in 0..400u32 {
            let client = SocketAddrV4::new(
                Ipv4Addr::from(0xc612_0000 | (i * 7919) & 0xffff),
                1024 + (i * 31) as u16,
            );
            let vip = SocketAddrV4::new(VIP, (i % 7) as u16 * 1000);
            let (protocol, expected) = if i % 2 == 0 {
                let flow = Flow {
                    client,
                    vip,
                    protocol: Protocol::Tcp,
                };
                (Protocol::Tcp, ring_index(flow_hash(&flow), 509) as u32)
            } else {
                (
                    Protocol::Udp,
                    ring_index(source_hash(*client.ip()), 509) as u32,
                )
            };
            let frame = match protocol {
                Protocol::Tcp => tcp_frame(f.lb_mac, client, vip),
                Protocol::Udp => udp_frame(f.lb_mac, client, vip),
            };
            f.dataplane.test_run(&frame, Some(f.ingress)).unwrap();
            let conn = f
                .dataplane
                .conn(&Flow {
                    client,
                    vip,
                    protocol,
                })
                .unwrap()
                .expect("the flow is in the table");
            assert_eq!(
                conn.backend, expected,
                "flow {i}: {protocol} {client} -> {vip}"
            );
            slots_seen.insert(expected);
        }
        // The flows really exercised the hash: they landed on many different slots.
        assert!(
            slots_seen.len() > 250,
            "only {} distinct slots",
            slots_seen.len()
        );
    });
}
