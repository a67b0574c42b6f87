//! A config's path MTUs, ICMP settings and echo switches reach the data
//! plane, and status shows each VIP's tunnel MTU and the MSS it implies.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};

use support::*;
use tula_dataplane::{IcmpSettings, XdpAction};

const WEB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const DNS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

const VIPS: &str = r#"
[[vip]]
name = "web"
address = "203.0.113.10"
port = 80
health_check = { type = "none" }
backends = [{ address = "198.18.100.2" }, { address = "198.18.100.3" }]

[[vip]]
name = "dns"
address = "203.0.113.11"
port = 53
protocol = "udp"
dsr_type = "l2"
icmp_echo = false
health_check = { type = "none" }
backends = [{ address = "198.18.0.10" }]
"#;

/// A 1381-byte TCP segment with DF from a client to WEB:80.
fn too_big_for_1400(lb_mac: [u8; 6]) -> Vec<u8> {
    let client = SocketAddrV4::new(Ipv4Addr::new(198, 18, 200, 7), 40000);
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv4(client.ip().octets(), WEB.octets(), 61)
        .tcp(client.port(), 80, 1, 64_000)
        .write_to_vec(&mut frame, &[0u8; 1381 - 40])
        .unwrap();
    frame
}

#[test]
fn path_mtu_icmp_and_echo_reach_the_data_plane_and_status() {
    let lab = Lab::new("mtu");
    let control = lab.start();
    lab.run(|| {
        let globals = "path_mtu = { lb0 = 1400 }\n[icmp]\nrate = 10\nburst = 4\n";
        control
            .apply(lab.config_with(globals, VIPS), "test")
            .expect("applying");
        let status = control.status().unwrap();
        let web = status.iter().find(|v| v.name == "web").unwrap();
        let dns = status.iter().find(|v| v.name == "dns").unwrap();
        assert_eq!(
            (web.tunnel_mtu, web.mss, web.icmp_echo),
            (Some(1380), Some(1340), true),
            "L3 DSR: a path of 1400 less 20 bytes of outer header"
        );
        assert_eq!(
            (dns.tunnel_mtu, dns.mss, dns.icmp_echo),
            (Some(1400), Some(1360), false),
            "L2 DSR: no outer header"
        );
        let json = serde_json::to_value(web).unwrap();
        assert_eq!(
            (json["tunnel_mtu"].as_u64(), json["mss"].as_u64()),
            (Some(1380), Some(1340))
        );

        let dataplane = lab.dataplane();
        assert_eq!(
            dataplane.icmp().unwrap(),
            IcmpSettings {
                frag_needed: true,
                per_second: 10,
                burst: 4
            }
        );
        assert!(dataplane.answers_echo(WEB.into()).unwrap());
        assert!(!dataplane.answers_echo(DNS.into()).unwrap());
        // The balancer itself uses the interface's tunnel MTU.
        let lb0 = tula_net::link("lb0").unwrap();
        let (action, out) = dataplane
            .test_run(&too_big_for_1400(lb0.mac), Some(lb0.index))
            .unwrap();
        assert_eq!(action, XdpAction::Tx);
        assert_eq!((out[34], out[35]), (3, 4), "Fragmentation Needed");
        assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1380);

        // Without the override, ICMP off: the interface's own MTU, and no answer.
        let globals = "[icmp]\nfrag_needed = false\n";
        control
            .apply(lab.config_with(globals, VIPS), "test")
            .expect("applying again");
        let status = control.status().unwrap();
        let web = status.iter().find(|v| v.name == "web").unwrap();
        assert_eq!((web.tunnel_mtu, web.mss), (Some(1480), Some(1440)));
        assert!(!dataplane.icmp().unwrap().frag_needed);
        let (action, _) = dataplane
            .test_run(&too_big_for_1400(lb0.mac), Some(lb0.index))
            .unwrap();
        assert_eq!(
            action,
            XdpAction::Tx,
            "1381 bytes fit a 1500-byte tunnel now"
        );
        let counters = dataplane.counters().unwrap();
        assert_eq!(counters.get(tula_dataplane::Counter::IcmpFragNeeded), 1);
    });
}
