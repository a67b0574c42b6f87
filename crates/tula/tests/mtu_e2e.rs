//! Path MTU end to end on the lab network, whose links are all 1500 bytes:
//! a client's full-size packets do not fit the IPIP tunnel once the load
//! balancer adds its 20 bytes. Path MTU Discovery through the balancer's
//! ICMP Fragmentation Needed, fragments balanced as whole datagrams, and the
//! backends' MSS clamp each make traffic work; each test has its own lab.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tula_lab::capture::Capture;
use tula_lab::topology::{Topology, VIP6, VIP_L2, VIP_L3, VIP_MIXED, VIP_PORT, VIP_UDP_PORT};

mod support;
use support::TestLab;
use tula_net::Netns;

impl TestLab {
    /// A lab whose links are all at 1500 bytes, so IPIP can't carry full-size packets.
    fn up_at_1500(tag: &str, backends: u8) -> TestLab {
        let lab = TestLab::up(tag, backends);
        lab.links_at_1500();
        lab
    }

    /// Every link between client, balancer and backends at 1500 bytes (the
    /// veth default, stated here because the tests depend on it).
    fn links_at_1500(&self) {
        let topology = &self.topology;
        let router = Netns::open(&topology.ns_router()).unwrap();
        router
            .run(|| {
                tula_net::set_mtu(Topology::ROUTER_LB_LINK, 1500)?;
                for i in 1..=topology.backends {
                    tula_net::set_mtu(&Topology::router_backend_link(i), 1500)?;
                }
                Ok::<_, tula_net::NetError>(())
            })
            .unwrap()
            .unwrap();
        let lb = Netns::open(&topology.ns_lb()).unwrap();
        lb.run(|| tula_net::set_mtu("eth0", 1500)).unwrap().unwrap();
    }

    /// The balancer's counters by name (`tula stats --json`).
    fn counters(&self) -> BTreeMap<String, u64> {
        let json: serde_json::Value = serde_json::from_str(&self.tula(&["stats", "--json"]).unwrap()).unwrap();
        serde_json::from_value(json["counters"].clone()).unwrap()
    }

    /// Applies the lab's own config with `extra` TOML appended.
    fn apply_config_with(&self, extra: &str) {
        let all: Vec<u8> = (1..=self.topology.backends).collect();
        let text = tula_lab::balancer::config_toml(&self.topology, &all) + extra;
        self.apply_toml(&text, "mtu-test.toml");
    }
}


fn vip_l3() -> SocketAddr {
    (VIP_L3, VIP_PORT).into()
}

/// POSTs `body` to the L3 VIP on a new connection; the answer, or the error.
fn upload(body: &[u8], timeout: Duration) -> std::io::Result<String> {
    upload_to(vip_l3(), body, timeout)
}

/// POSTs `body` to `vip` on a new connection; the answer, or the error.
fn upload_to(vip: SocketAddr, body: &[u8], timeout: Duration) -> std::io::Result<String> {
    tula_lab::http::Client::connect(vip, timeout)?.request("/", Some(body), false)
}

/// What `ip route get ADDR` says in `ns` (IPv4 or IPv6, as ADDR is).
fn route_get(ns: &Netns, addr: &str) -> String {
    let out = ns.command("ip").args(["route", "get", addr]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_large_upload_completes_thanks_to_path_mtu_discovery_and_stalls_without_it() {
    let lab = TestLab::up_at_1500("pmtu", 1);
    let client = Netns::open(&lab.topology.ns_client()).unwrap();
    let body: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();

    // Fragmentation Needed switched off: the full-size segments vanish at the
    // balancer, as behind a firewall that drops ICMP, and the upload stalls.
    lab.apply_config_with("\n[icmp]\nfrag_needed = false\n");
    let started = Instant::now();
    let stalled = client.run(|| upload(&body, Duration::from_secs(5))).unwrap();
    assert!(stalled.is_err(), "the upload went through without PMTUD: {stalled:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let off = lab.counters();
    assert!(off["frag_needed"] > 0, "{off:?}");
    assert_eq!(off["icmp_frag_needed"], 0, "{off:?}");
    assert!(!route_get(&client, "203.0.113.10").contains("mtu"), "the client learned nothing");

    // On (the default): the balancer tells the client the tunnel's MTU and the
    // same upload completes.
    lab.apply_config_with("");
    let answer = client
        .run(|| upload(&body, Duration::from_secs(10)))
        .unwrap()
        .expect("the upload completes with PMTUD");
    assert_eq!(answer.trim(), "be1 received 1048576 bytes");
    let on = lab.counters();
    assert!(on["icmp_frag_needed"] > off["icmp_frag_needed"], "{on:?}");
    let route = route_get(&client, "203.0.113.10");
    assert!(route.contains("mtu 1480"), "the client's path MTU to the VIP: {route}");
}

#[test]
fn a_large_upload_over_ipv6_completes_thanks_to_packet_too_big_and_stalls_without_it() {
    let lab = TestLab::up_at_1500("pmtu6", 1);
    let client = Netns::open(&lab.topology.ns_client()).unwrap();
    let body: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let vip6 = SocketAddr::from((VIP6, VIP_PORT));

    // Full-size IPv6 packets (1500 bytes) do not fit IP6IP6's 40 more bytes.
    // Without Packet Too Big they vanish at the balancer and the upload stalls.
    lab.apply_config_with("\n[icmp]\nfrag_needed = false\n");
    let stalled = client.run(|| upload_to(vip6, &body, Duration::from_secs(5))).unwrap();
    assert!(stalled.is_err(), "the upload went through without PMTUD: {stalled:?}");
    let off = lab.counters();
    assert!(off["frag_needed"] > 0, "{off:?}");
    assert_eq!(off["icmp_frag_needed"], 0, "{off:?}");
    assert!(!route_get(&client, &VIP6.to_string()).contains("mtu"), "the client learned nothing");

    // With it (the default) the client's TCP lowers its MSS and the upload completes.
    lab.apply_config_with("");
    let answer = client
        .run(|| upload_to(vip6, &body, Duration::from_secs(10)))
        .unwrap()
        .expect("the IPv6 upload completes with PMTUD");
    assert_eq!(answer.trim(), "be1 received 1048576 bytes");
    let on = lab.counters();
    assert!(on["icmp_frag_needed"] > off["icmp_frag_needed"], "{on:?}");
    let route = route_get(&client, &VIP6.to_string());
    assert!(route.contains("mtu 1460"), "the client's path MTU to the IPv6 VIP, 1500 - 40: {route}");

    // The IPv4 VIP served over IPv6 loses 40 bytes too: Fragmentation Needed says 1460.
    let answer = client
        .run(|| upload_to((VIP_MIXED, VIP_PORT).into(), &body, Duration::from_secs(10)))
        .unwrap()
        .expect("the upload to the IPv4-in-IPv6 VIP completes with PMTUD");
    assert_eq!(answer.trim(), "be1 received 1048576 bytes");
    let route = route_get(&client, &VIP_MIXED.to_string());
    assert!(route.contains("mtu 1460"), "the client's path MTU to the mixed VIP: {route}");
}

#[test]
fn a_udp_datagram_fragmented_by_the_client_arrives_whole_at_one_backend() {
    let lab = TestLab::up_at_1500("frag", 3);
    let client = Netns::open(&lab.topology.ns_client()).unwrap();
    let lb = Netns::open(&lab.topology.ns_lb()).unwrap();
    let send = |size: usize, n: usize| {
        client
            .run(|| {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                let datagram: Vec<u8> = (0..size).map(|j| (n * 7 + j) as u8).collect();
                assert_eq!(socket.send_to(&datagram, (VIP_L3, VIP_UDP_PORT)).unwrap(), size);
            })
            .unwrap()
    };

    // 1500-byte fragments (DF clear) are too big for the tunnel and for the
    // balancer's own link: encapsulated, they go to its kernel, which
    // fragments the outer packets for the path. (The lab's backends cannot
    // reassemble those before decapsulating: they have no ipip module.)
    let before = lab.counters();
    let fragmented_by_lb = || ip_stat(&lb, "FragCreates");
    let lb_fragments = fragmented_by_lb();
    send(3000, 99);
    std::thread::sleep(Duration::from_millis(300));
    let after = lab.counters();
    assert_eq!(after["too_big_no_df"] - before["too_big_no_df"], 2, "{after:?}");
    assert_eq!(fragmented_by_lb() - lb_fragments, 4, "two outer packets, two fragments each");

    // The client's route to the VIPs says 1480, as PMTUD leaves it: its
    // fragments then fit the tunnel.
    let out = client
        .command("ip")
        .args(["route", "add", "203.0.113.0/24", "via", "198.18.0.1", "mtu", "1480"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    const DATAGRAMS: usize = 12;
    const SIZE: usize = 3000;
    let before = lab.counters();
    let received: Vec<(u8, Vec<Vec<u8>>)> = std::thread::scope(|s| {
        let receivers: Vec<_> = (1..=3u8)
            .map(|i| {
                let ns = Netns::open(&lab.topology.ns_backend(i)).unwrap();
                let socket = ns
                    .run(|| UdpSocket::bind((VIP_L3, VIP_UDP_PORT)))
                    .unwrap()
                    .unwrap();
                s.spawn(move || {
                    // Bounded: until 3 s pass without a datagram.
                    socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = socket.recv(&mut buf) {
                        got.push(buf[..n].to_vec());
                    }
                    (i, got)
                })
            })
            .collect();
        for n in 0..DATAGRAMS {
            send(SIZE, n);
        }
        receivers.into_iter().map(|r| r.join().unwrap()).collect()
    });

    let mut seen = vec![0; DATAGRAMS];
    let mut backends_used = 0;
    for (backend, datagrams) in &received {
        backends_used += usize::from(!datagrams.is_empty());
        for datagram in datagrams {
            assert_eq!(datagram.len(), SIZE, "be{backend} got a datagram cut short");
            let n = (0..DATAGRAMS)
                .find(|&n| datagram[0] == (n * 7) as u8 && datagram[1] == (n * 7 + 1) as u8)
                .expect("a datagram the client sent");
            let sent: Vec<u8> = (0..SIZE).map(|j| (n * 7 + j) as u8).collect();
            assert_eq!(datagram, &sent, "be{backend}: datagram {n} reassembled wrong");
            seen[n] += 1;
        }
    }
    assert_eq!(seen, vec![1; DATAGRAMS], "every datagram exactly once: {seen:?}");
    assert!(backends_used >= 2, "the datagrams were balanced: {received:?}");
    let after = lab.counters();
    let grew = |name: &str| after[name] - before.get(name).copied().unwrap_or(0);
    assert_eq!(grew("frag_first"), DATAGRAMS as u64, "{after:?}");
    assert_eq!(grew("fragment"), 2 * DATAGRAMS as u64, "3008 bytes of UDP: 1456 + 1456 + 96");
    assert_eq!(grew("frag_orphan"), 0);
}

/// A field of the `Ip:` line of /proc/net/snmp in `ns` (e.g. FragCreates).
fn ip_stat(ns: &Netns, field: &str) -> u64 {
    let out = ns.command("cat").arg("/proc/net/snmp").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let at = names.split_whitespace().position(|n| n == field).unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// The MSS option of the first SYN-ACK from `from` among `frames`.
fn syn_ack_mss(frames: &[Vec<u8>], from: std::net::Ipv4Addr) -> Option<u16> {
    frames.iter().find_map(|f| {
        if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[23] != 6 || f[26..30] != from.octets() {
            return None;
        }
        let tcp = &f[14 + usize::from(f[14] & 0x0f) * 4..];
        if tcp.len() < 20 || tcp[13] & 0x12 != 0x12 {
            return None; // not SYN + ACK
        }
        let mut options = &tcp[20..(usize::from(tcp[12] >> 4) * 4).min(tcp.len())];
        while let [kind, rest @ ..] = options {
            match (kind, rest) {
                (0, _) => return None,
                (1, _) => options = rest,
                (2, [4, hi, lo, ..]) => return Some(u16::from_be_bytes([*hi, *lo])),
                (_, [len, ..]) if *len >= 2 => options = &options[usize::from(*len).min(options.len())..],
                _ => return None,
            }
        }
        None
    })
}

#[test]
fn mss_clamp_lowers_the_mss_in_the_backends_syn_ack() {
    let lab = TestLab::up_at_1500("mss", 1);
    let client = Netns::open(&lab.topology.ns_client()).unwrap();
    let mut capture = client.run(|| Capture::open("eth0")).unwrap().unwrap();
    let syn_ack = |capture: &mut Capture| {
        capture.drain_frames();
        client.run(|| tula_lab::http::get(vip_l3(), Duration::from_secs(5))).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        syn_ack_mss(&capture.drain_frames(), VIP_L3)
    };
    assert_eq!(syn_ack(&mut capture), Some(1460), "the backend's own MSS for a 1500-byte uplink");

    let backend = Netns::open(&lab.topology.ns_backend(1)).unwrap();
    let out = backend
        .command(env!("CARGO_BIN_EXE_tula"))
        .args(["decap", "setup", "--method", "xdp", "--interface", "eth0", "--root"])
        .arg(lab.decap_root(1))
        .args(["--vip", &VIP_L3.to_string(), "--vip", &VIP_L2.to_string()])
        .args(["--vip", &VIP_MIXED.to_string(), "--vip", &VIP6.to_string(), "--mss-clamp"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // The lab's uplinks are dual-stack: an IPv4 VIP may come in IPv6 (the mixed VIP does).
    assert!(text.contains("clamped to 1420"), "{text}");

    assert_eq!(syn_ack(&mut capture), Some(1420), "1500 - 40 (IPv4 in IPv6) - 40 (IPv4, TCP)");
    let verify = backend
        .command(env!("CARGO_BIN_EXE_tula"))
        .args(["decap", "verify", "--root"])
        .arg(lab.decap_root(1))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(text.contains("PASS  TCP MSS of SYN and SYN-ACK from the VIPs clamped to 1420"), "{text}");
}

#[test]
fn ping_to_a_vip_is_answered_by_the_balancer() {
    let lab = TestLab::up_at_1500("ping", 1);
    let client = Netns::open(&lab.topology.ns_client()).unwrap();
    let before = lab.counters();
    let reply = client
        .run(|| {
            // An ICMP datagram socket: the kernel fills in the id and checksum (root's group may use it).
            tula_net::sysctl::write("net.ipv4.ping_group_range", "0 0").unwrap();
            let socket = ping_socket();
            let request = [8u8, 0, 0, 0, 0, 0, 0, 1, b'p', b'i', b'n', b'g'];
            let to = libc_sockaddr(VIP_L3);
            // SAFETY: sendto/recv on a socket this closure owns, with local buffers.
            unsafe {
                let sent = libc::sendto(
                    socket,
                    request.as_ptr().cast(),
                    request.len(),
                    0,
                    (&to as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as u32,
                );
                assert_eq!(sent, request.len() as isize, "{}", std::io::Error::last_os_error());
                let mut buf = [0u8; 64];
                let n = libc::recv(socket, buf.as_mut_ptr().cast(), buf.len(), 0);
                libc::close(socket);
                assert!(n > 0, "no echo reply within 3 s: {}", std::io::Error::last_os_error());
                buf[..n as usize].to_vec()
            }
        })
        .unwrap();
    assert_eq!(reply[0], 0, "an echo reply");
    assert_eq!(&reply[8..], b"ping");
    let after = lab.counters();
    assert_eq!(after["icmp_echo"] - before["icmp_echo"], 1, "answered by the balancer: {after:?}");
}

/// An ICMP datagram ("ping") socket with a 3-second receive timeout.
fn ping_socket() -> libc::c_int {
    // SAFETY: plain socket calls with correctly sized arguments.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP);
        assert!(fd >= 0, "ping socket: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval { tv_sec: 3, tv_usec: 0 };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        );
        fd
    }
}

fn libc_sockaddr(addr: std::net::Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.octets()) },
        sin_zero: [0; 8],
    }
}
