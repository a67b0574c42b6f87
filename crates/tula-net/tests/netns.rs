//! Real namespaces, veths and packets: the plumbing the lab and tests build on.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;
use tula_net::*;

fn unique(tag: &str) -> String {
    format!("tnet-{tag}-{}", std::process::id())
}

#[test]
fn two_namespaces_exchange_udp_over_a_veth() {
    let a = Netns::create(&unique("a")).unwrap();
    let b = Netns::create(&unique("b")).unwrap();
    a.run(|| {
        add_veth("va", "vb", Some(&b)).unwrap();
        add_address("va", "198.18.200.1".parse().unwrap(), 24).unwrap();
        // Adding twice is a no-op, not an error.
        assert!(!add_address("va", "198.18.200.1".parse().unwrap(), 24).unwrap());
        set_up("va").unwrap();
        set_offload("va", Offload::TxChecksum, false).unwrap();
        set_offload("va", Offload::Gro, true).unwrap();
        keep_neighbour_resolved("va", Ipv4Addr::new(198, 18, 200, 2)).unwrap();
        add_route(
            Ipv4Addr::new(198, 18, 201, 0),
            24,
            Some(Ipv4Addr::new(198, 18, 200, 2)),
            None,
        )
        .unwrap();
    })
    .unwrap();
    let vb_mac = b
        .run(|| {
            add_address("vb", "198.18.200.2".parse().unwrap(), 24).unwrap();
            set_up("vb").unwrap();
            link("vb").unwrap().mac
        })
        .unwrap();

    let received = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            b.enter().unwrap();
            let sock = UdpSocket::bind("198.18.200.2:5555").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            (buf[..n].to_vec(), from)
        });
        std::thread::sleep(Duration::from_millis(100));
        a.run(|| {
            let sock = UdpSocket::bind("198.18.200.1:0").unwrap();
            for _ in 0..20 {
                sock.send_to(b"hello", "198.18.200.2:5555").unwrap();
                std::thread::sleep(Duration::from_millis(20));
                if rx.is_finished() {
                    break;
                }
            }
        })
        .unwrap();
        rx.join().unwrap()
    });
    assert_eq!(received.0, b"hello");
    assert_eq!(received.1.ip(), IpAddr::V4(Ipv4Addr::new(198, 18, 200, 1)));

    a.run(|| {
        let stats = link_stats("va").unwrap();
        assert!(stats.tx_packets >= 1, "{stats:?}");
        let route = route_get(Ipv4Addr::new(198, 18, 201, 7)).unwrap();
        assert_eq!(route.dev, "va");
        assert_eq!(route.gateway, Some(Ipv4Addr::new(198, 18, 200, 2)));
        assert_eq!(
            primary_ipv4("va").unwrap(),
            Some(Ipv4Addr::new(198, 18, 200, 1))
        );
        add_neighbour("va", Ipv4Addr::new(198, 18, 200, 9), [2, 0, 0, 0, 0, 9]).unwrap();
        assert!(del_address("va", "198.18.200.1".parse().unwrap(), 24).unwrap());
        assert!(!del_address("va", "198.18.200.1".parse().unwrap(), 24).unwrap());
    })
    .unwrap();
    assert_ne!(vb_mac, [0; 6]);
}

#[test]
fn sysctls_are_per_namespace() {
    let ns = Netns::create(&unique("sysctl")).unwrap();
    let host = sysctl::read("net.ipv4.conf.all.arp_ignore").unwrap();
    let inside = ns
        .run(|| {
            sysctl::write(
                "net.ipv4.conf.all.arp_ignore",
                if host == "1" { "2" } else { "1" },
            )
            .unwrap();
            sysctl::read("net.ipv4.conf.all.arp_ignore").unwrap()
        })
        .unwrap();
    assert_ne!(inside, host);
    assert_eq!(sysctl::read("net.ipv4.conf.all.arp_ignore").unwrap(), host);
}

#[test]
fn namespaces_are_deleted_on_drop_and_errors_name_the_object() {
    let name = unique("drop");
    {
        let ns = Netns::create(&name).unwrap();
        assert!(netns_list().unwrap().contains(&name));
        let err = Netns::create(&name).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("network namespace {name:?} already exists")
        );
        let err = ns.run(|| link("nope0").unwrap_err()).unwrap();
        assert_eq!(
            err.to_string(),
            "network interface \"nope0\" does not exist"
        );
    }
    assert!(!netns_list().unwrap().contains(&name));
    assert!(matches!(
        Netns::open(&name),
        Err(NetError::NoSuchNetns { .. })
    ));
}

#[test]
fn commands_run_inside_the_namespace() {
    let ns = Netns::create(&unique("cmd")).unwrap();
    ns.run(|| {
        add_veth("cmd0", "cmd1", None).unwrap();
    })
    .unwrap();
    let out = ns
        .command("cat")
        .arg("/proc/thread-self/net/dev")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cmd0"), "{text}");
    let host = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    assert!(!host.contains("cmd0"));
}

#[test]
fn an_ipv6_address_is_usable_at_once() {
    let a = Netns::create(&unique("nodad-a")).unwrap();
    let b = Netns::create(&unique("nodad-b")).unwrap();
    let bound = a
        .run(|| {
            add_veth("va6", "vb6", Some(&b)).unwrap();
            set_up("va6").unwrap();
            b.run(|| set_up("vb6")).unwrap().unwrap();
            add_address("va6", "2001:db8:200::1".parse().unwrap(), 64).unwrap();
            // A tentative address (duplicate address detection running) cannot be bound,
            // and one without its local route cannot be reached.
            let server = std::net::TcpListener::bind("[2001:db8:200::1]:5556")?;
            std::net::TcpStream::connect(server.local_addr()?).map(|_| ())
        })
        .unwrap();
    bound.expect("added nodad: not tentative");
}
