//! End to end on the lab network: a real client, router, XDP load balancer and
//! backends with real HTTP servers, each in its own namespace.
//!
//! Each test builds its own lab under a unique name, so they run in parallel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tula_lab::capture::{Capture, FrameCounts};
use tula_lab::LinkCounters;
use tula_lab::topology::{Topology, LB_ADDR6, VIP6, VIP_L2, VIP_L3, VIP_MIXED, VIP_PORT};
mod support;

use support::TestLab;

fn vip_l3() -> SocketAddr {
    (VIP_L3, VIP_PORT).into()
}

/// Where the packets of some traffic went: the lab's link counters before
/// and after, what reached the lb's kernel (XDP passed it) and what the lb
/// sent the router.
struct Trace {
    before: LinkCounters,
    after: LinkCounters,
    seen_at_lb: FrameCounts,
    sent_by_lb: FrameCounts,
}

impl Trace {
    /// Runs `traffic` and traces it.
    fn of<T>(lab: &TestLab, traffic: impl FnOnce() -> T) -> (T, Trace) {
        let lb = tula_net::Netns::open(&lab.topology.ns_lb()).unwrap();
        let router = tula_net::Netns::open(&lab.topology.ns_router()).unwrap();
        let mut at_lb = lb.run(|| Capture::open("eth0")).unwrap().unwrap();
        let mut lb_to_router = router.run(|| Capture::open(Topology::ROUTER_LB_LINK)).unwrap().unwrap();
        at_lb.drain();
        lb_to_router.drain();
        let before = lab.link_counters().unwrap();
        let result = traffic();
        // Give the last replies time to be counted.
        std::thread::sleep(Duration::from_millis(300));
        let after = lab.link_counters().unwrap();
        (result, Trace { before, after, seen_at_lb: at_lb.drain(), sent_by_lb: lb_to_router.drain() })
    }

    /// Packets the lb's eth0 sent.
    fn lb_tx(&self) -> u64 {
        self.after.lb_eth0.tx_packets - self.before.lb_eth0.tx_packets
    }

    /// Packets the router received from the backends: their replies.
    fn replies(&self, backends: u8) -> u64 {
        (1..=backends)
            .map(|i| {
                let link = format!("be{i}");
                self.after.router_backends[&link].rx_packets - self.before.router_backends[&link].rx_packets
            })
            .sum()
    }
}

#[test]
fn layer3_dsr_spreads_load_and_replies_bypass_the_load_balancer() {
    let lab = TestLab::up("l3", 3);
    let (spread, trace) = Trace::of(&lab, || lab.send_requests(VIP_L3, 600).unwrap());
    let Trace { before, after, seen_at_lb, sent_by_lb } = &trace;

    // Every backend serves, each within 30% of a fair share: a fair share of
    // 600 flows hashed at random is 200 +- 11.5 (one sigma), so +-30 failed
    // about one run in 30; +-60 is over 5 sigma.
    assert_eq!(spread.len(), 3, "{spread:?}");
    for (name, n) in &spread {
        assert!((140..=260).contains(n), "{name} got {n} of 600: {spread:?}");
    }
    // Every IPv4 frame the lb sent toward the router was IPIP, from the lb to a backend.
    assert!(sent_by_lb.ipip >= 600 * 3, "{sent_by_lb:?}");
    assert_eq!(sent_by_lb.ipip, sent_by_lb.ipv4, "{sent_by_lb:?}");
    for (src, dst) in sent_by_lb.ipip_pairs.keys() {
        assert_eq!(*src, tula_lab::topology::LB_ADDR);
        assert!((1..=3).any(|i| *dst == Topology::backend_addr(i)), "IPIP to {dst}");
    }
    // The lb's transmit counter holds exactly the forwarded requests: no replies.
    let lb_tx = trace.lb_tx();
    let lb_rx = after.lb_eth0.rx_packets - before.lb_eth0.rx_packets;
    let forwarded = sent_by_lb.ipip;
    assert!(lb_tx <= forwarded + 10, "lb sent {lb_tx} packets but forwarded {forwarded}");
    assert!(lb_rx >= forwarded, "lb received {lb_rx} but forwarded {forwarded}");
    // No reply (source: the VIP) ever reached the load balancer.
    assert_eq!(seen_at_lb.from.get(&VIP_L3).copied().unwrap_or(0), 0, "{seen_at_lb:?}");
    // The replies crossed the router from the backends.
    let replies = trace.replies(3);
    assert!(replies >= 600 * 3, "only {replies} packets came back from the backends");
}

#[test]
fn ipv6_and_mixed_vips_reach_ipv6_backends_in_tunnels_and_replies_bypass_the_load_balancer() {
    let lab = TestLab::up("v6", 3);
    const N: usize = 300;
    let ((ipv6, mixed), trace) =
        Trace::of(&lab, || (lab.send_requests(VIP6, N).unwrap(), lab.send_requests(VIP_MIXED, N).unwrap()));
    let Trace { seen_at_lb, sent_by_lb, .. } = &trace;

    // Both VIPs are balanced over the three backends (a fair share of 300 is 100 +- 8).
    for spread in [&ipv6, &mixed] {
        assert_eq!(spread.len(), 3, "{spread:?}");
        assert!(spread.values().all(|n| (50..=150).contains(n)), "{spread:?}");
    }
    // Every frame the lb sent toward the router was an IPv6 tunnel from its
    // IPv6 address to a backend's: IP6IP6 for the IPv6 VIP, IPv4 in IPv6 for the mixed one.
    assert_eq!(sent_by_lb.ip6_tunnel, sent_by_lb.ipv6, "{sent_by_lb:?}");
    assert_eq!(sent_by_lb.ipip, sent_by_lb.ipv4, "{sent_by_lb:?}");
    let mut by_next_header = BTreeMap::new();
    for ((src, dst, next), n) in &sent_by_lb.ip6_tunnel_pairs {
        assert_eq!(*src, LB_ADDR6);
        assert!((1..=3).any(|i| *dst == Topology::backend_addr6(i)), "tunnel to {dst}: {sent_by_lb:?}");
        *by_next_header.entry(*next).or_insert(0) += n;
    }
    // At least SYN, request and ACK of the FIN per connection.
    assert!(by_next_header.get(&41).copied().unwrap_or(0) >= 3 * N as u64, "{sent_by_lb:?}");
    assert!(by_next_header.get(&4).copied().unwrap_or(0) >= 3 * N as u64, "{sent_by_lb:?}");
    // The lb sent only what it forwarded (and a little neighbour discovery), and no reply reached it.
    let lb_tx = trace.lb_tx();
    assert!(lb_tx <= sent_by_lb.ip6_tunnel + 20, "lb sent {lb_tx} packets but forwarded {}", sent_by_lb.ip6_tunnel);
    assert_eq!(seen_at_lb.from6.get(&VIP6).copied().unwrap_or(0), 0, "{seen_at_lb:?}");
    assert_eq!(seen_at_lb.from.get(&VIP_MIXED).copied().unwrap_or(0), 0, "{seen_at_lb:?}");
    // The replies crossed the router from the backends.
    let replies = trace.replies(3);
    assert!(replies >= 2 * 3 * N as u64, "only {replies} packets came back from the backends");

    // curl with the address written as the docs show it.
    let client = tula_net::Netns::open(&lab.topology.ns_client()).unwrap();
    let out = client.command("curl").args(["-s", "-6", "-g", "--max-time", "5", "http://[2001:db8:ff::10]/"]).output().unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && body.starts_with("be"), "curl: {body}{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn layer2_dsr_vip_serves_over_the_shared_segment() {
    let lab = TestLab::up("l2", 3);
    let spread = lab.send_requests(VIP_L2, 120).unwrap();
    assert_eq!(spread.len(), 3, "{spread:?}");
    assert_eq!(spread.values().sum::<usize>(), 120);
}

#[test]
fn long_lived_connection_survives_adding_and_removing_other_backends() {
    let lab = TestLab::up("sticky", 4);
    lab.set_active_backends(&[1, 2, 3]).unwrap();
    let client_ns = tula_net::Netns::open(&lab.topology.ns_client()).unwrap();
    client_ns
        .run(|| {
            let mut conn = tula_lab::http::Client::connect(vip_l3(), Duration::from_secs(5)).unwrap();
            let first = conn.request("/", None, true).unwrap();
            let mine: u8 = first.trim().trim_start_matches("be").parse().unwrap();
            assert!((1..=3).contains(&mine));

            // A fourth backend joins: new connections reach it, ours stays.
            lab.set_active_backends(&[1, 2, 3, 4]).unwrap();
            assert_eq!(conn.request("/", None, true).unwrap(), first);
            let mut spread = BTreeMap::new();
            for _ in 0..120 {
                let who = tula_lab::http::get(vip_l3(), Duration::from_secs(5)).unwrap();
                *spread.entry(who.trim().to_string()).or_insert(0) += 1;
            }
            assert!(spread.contains_key("be4"), "new flows never reached be4: {spread:?}");

            // Another backend leaves: ours is untouched.
            let other = (1..=4).find(|i| *i != mine).unwrap();
            let remaining: Vec<u8> = (1..=4).filter(|i| *i != other).collect();
            lab.set_active_backends(&remaining).unwrap();
            assert_eq!(conn.request("/", None, true).unwrap(), first);
            for _ in 0..60 {
                let who = tula_lab::http::get(vip_l3(), Duration::from_secs(5)).unwrap();
                assert_ne!(who.trim(), format!("be{other}"), "a new flow went to the removed backend");
            }
        })
        .unwrap();
}

#[test]
fn decap_verify_passes_on_backends_and_names_a_broken_rp_filter() {
    let lab = TestLab::up("verify", 2);
    // verify also checks that decapsulated traffic has been seen.
    let spread = lab.send_requests(VIP_L3, 40).unwrap();
    assert_eq!(spread.len(), 2, "{spread:?}");
    let verify = |i: u8| {
        let ns = tula_net::Netns::open(&lab.topology.ns_backend(i)).unwrap();
        ns.command(env!("CARGO_BIN_EXE_tula"))
            .args(["decap", "verify", "--root"])
            .arg(lab.decap_root(i))
            .output()
            .unwrap()
    };
    let ok = verify(1);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "verify failed on a good backend:\n{text}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(!text.contains("FAIL"), "{text}");

    let ns = tula_net::Netns::open(&lab.topology.ns_backend(2)).unwrap();
    ns.run(|| tula_net::sysctl::write("net.ipv4.conf.all.rp_filter", "1")).unwrap().unwrap();
    let broken = verify(2);
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(!broken.status.success(), "verify passed on a broken backend:\n{text}");
    let failing: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(!failing.is_empty() && failing.iter().all(|l| l.contains("rp_filter")), "{text}");
}

#[test]
fn lab_down_leaves_nothing_behind() {
    let lab = TestLab::up("down", 1);
    let prefix = format!("{}-", lab.topology.prefix);
    assert_eq!(tula_net::netns_list().unwrap().iter().filter(|n| n.starts_with(&prefix)).count(), 4);
    lab.lab.down().unwrap();
    assert!(tula_net::netns_list().unwrap().iter().all(|n| !n.starts_with(&prefix)));
    assert!(!lab.topology.run_dir().exists());
    // Taking it down twice is fine.
    lab.lab.down().unwrap();
}

#[test]
fn killing_and_restarting_the_daemon_drops_no_request() {
    let lab = TestLab::up("restart", 3);
    let client_ns = tula_net::Netns::open(&lab.topology.ns_client()).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed) = std::thread::scope(|s| {
        let traffic = s.spawn(|| {
            client_ns
                .run(|| {
                    let (mut ok, mut failed) = (0u32, Vec::new());
                    // Bounded: at most 5000 requests, and stops when told.
                    for _ in 0..5000 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        // A request that waited for a SYN retransmission (1 s) saw a gap in forwarding.
                        let started = std::time::Instant::now();
                        match tula_lab::http::get(vip_l3(), Duration::from_secs(3)) {
                            Ok(_) if started.elapsed() < Duration::from_millis(900) => ok += 1,
                            Ok(_) => failed.push(format!("took {:?}", started.elapsed())),
                            Err(e) => failed.push(e.to_string()),
                        }
                    }
                    (ok, failed)
                })
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(300));
        lab.restart_balancer().unwrap();
        // And a second time, with traffic still flowing.
        std::thread::sleep(Duration::from_millis(300));
        lab.restart_balancer().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        traffic.join().unwrap()
    });
    assert!(ok > 50, "only {ok} requests went through");
    assert!(failed.is_empty(), "{} of {} requests failed across the restarts: {:?}", failed.len(), ok as usize + failed.len(), &failed[..failed.len().min(5)]);
    // The adopted daemon still manages the VIPs.
    let status = lab.tula(&["status", "--json"]).unwrap();
    assert!(status.contains("203.0.113.10"), "{status}");
}
