//! The next-hop cache: bpf_fib_lookup's answer for a backend is reused for a
//! short while, by every backend with the same address, and forgotten when it
//! may be wrong -- on flush, on expiry, when the backend's address or the
//! ingress interface differ.

mod support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use support::*;
use tula_dataplane::{Backend, Counter, DataplaneError, Dsr, Protocol, Scheduler, XdpAction};

const NEW_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x99];

/// Sends an established-flow segment and returns (verdict, destination MAC).
fn send(f: &Fixture, ingress: u32) -> (XdpAction, [u8; 6]) {
    let frame = tcp_frame(f.lb_mac, client(1000), vip(80));
    let (action, out) = f.dataplane.test_run(&frame, Some(ingress)).unwrap();
    (action, out[..6].try_into().unwrap())
}

/// On CPU 0, an L3 VIP (TCP port 80) whose every ring slot is backend 3 at `addr`.
fn balance_to(f: &mut Fixture, addr: impl Into<IpAddr>) {
    stay_on_cpu0();
    f.add_backend(3, addr);
    let ring = f.ring_of(3);
    f.add_vip(vip_key(80, Protocol::Tcp), Dsr::L3Ipip, Scheduler::Maglev, &ring);
}

#[test]
fn a_neighbour_change_shows_after_a_flush_or_once_the_entry_expires() {
    in_lab("nhcache", |f| {
        balance_to(f, routed_backend(3));
        assert_eq!(send(f, f.ingress), (XdpAction::Tx, NEXT_HOP_MAC));

        tula_net::add_neighbour("lb0", NEXT_HOP, NEW_MAC).unwrap();
        assert_eq!(send(f, f.ingress).1, NEXT_HOP_MAC, "cached");
        f.dataplane.flush_next_hops().unwrap();
        assert_eq!(send(f, f.ingress).1, NEW_MAC, "after a flush");
        // A flush leaves the counters.
        assert_eq!(f.dataplane.backend_traffic(3).unwrap().packets, 3);

        tula_net::add_neighbour("lb0", NEXT_HOP, NEXT_HOP_MAC).unwrap();
        assert_eq!(send(f, f.ingress).1, NEW_MAC, "cached");
        // 25 jiffies: 100 ms here (HZ=250), at most 250 ms (HZ=100).
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(send(f, f.ingress).1, NEXT_HOP_MAC, "after expiry");
    });
}

#[test]
fn a_new_backend_address_is_looked_up_at_once() {
    in_lab("nhaddr", |f| {
        balance_to(f, routed_backend(3));
        assert_eq!(send(f, f.ingress).1, NEXT_HOP_MAC);
        // Backend 3 moves onto the local segment: its own MAC, no flush needed.
        f.add_backend(3, L2_BACKEND);
        assert_eq!(send(f, f.ingress).1, L2_BACKEND_MAC);
    });
}

#[test]
fn backends_with_one_address_share_its_next_hop() {
    in_lab("nhshare", |f| {
        balance_to(f, routed_backend(3));
        assert_eq!(send(f, f.ingress).1, NEXT_HOP_MAC);
        // Backend 4, of another VIP, is the same server.
        f.add_backend(4, routed_backend(3));
        let ring = f.ring_of(4);
        f.add_vip(vip_key(81, Protocol::Tcp), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let send81 = |f: &Fixture| {
            let frame = tcp_frame(f.lb_mac, client(1000), vip(81));
            let (action, out) = f.dataplane.test_run(&frame, Some(f.ingress)).unwrap();
            assert_eq!(action, XdpAction::Tx);
            <[u8; 6]>::try_from(&out[..6]).unwrap()
        };
        tula_net::add_neighbour("lb0", NEXT_HOP, NEW_MAC).unwrap();
        assert_eq!(send81(f), NEXT_HOP_MAC, "backend 4 uses the next hop backend 3's packet cached");
        // Moving elsewhere, backend 4 leaves the shared hop, and its next hop is its own.
        f.add_backend(4, L2_BACKEND);
        assert_eq!(send81(f), L2_BACKEND_MAC);
        assert_eq!(send(f, f.ingress).1, NEXT_HOP_MAC, "backend 3's hop is still cached");
        assert_eq!(f.dataplane.backend_traffic(3).unwrap().packets, 2, "each backend counts its own");
        assert_eq!(f.dataplane.backend_traffic(4).unwrap().packets, 2);
    });
}

#[test]
fn a_batch_of_backends_is_checked_whole_then_used_at_once() {
    in_lab("nhbatch", |f| {
        stay_on_cpu0();
        let backend = |addr: IpAddr| Backend { addr, alive: true };
        let max = f.dataplane.max_backends();
        let bad = [
            (5, backend(L2_BACKEND.into())),
            (max, backend(routed_backend(3).into())),
        ];
        assert!(matches!(
            f.dataplane.set_backends(&bad),
            Err(DataplaneError::BackendIdOutOfRange { id, .. }) if id == max
        ));
        assert_eq!(
            f.dataplane.backend(5).unwrap(),
            None,
            "nothing of a refused batch is written"
        );

        let good = [
            (5, backend(L2_BACKEND.into())),
            (6, backend(routed_backend(3).into())),
        ];
        f.dataplane.set_backends(&good).unwrap();
        assert_eq!(f.dataplane.backend(6).unwrap(), Some(good[1].1));
        let ring = f.ring_of(5);
        f.add_vip(
            vip_key(80, Protocol::Tcp),
            Dsr::L3Ipip,
            Scheduler::Maglev,
            &ring,
        );
        assert_eq!(send(f, f.ingress), (XdpAction::Tx, L2_BACKEND_MAC));
        // Backend 5 moves in a batch of one: the next packet follows.
        f.dataplane.set_backends(&[(5, good[1].1)]).unwrap();
        assert_eq!(send(f, f.ingress), (XdpAction::Tx, NEXT_HOP_MAC));
    });
}

#[test]
fn a_new_address_finding_every_path_taken_is_refused_until_one_is_given_back() {
    in_lab("nhlimit", |f| {
        let backend = |n: u32| Backend {
            addr: routed_backend(n as u8 + 1).into(),
            alive: true,
        };
        let max = f.dataplane.max_backend_addresses();
        assert!(max < f.dataplane.max_backends(), "the fixture has fewer paths than backend ids");
        let all: Vec<(u32, Backend)> = (0..max).map(|id| (id, backend(id))).collect();
        f.dataplane.set_backends(&all).unwrap();
        // Backend `max` shares backend 0's address; backend `max + 1` has a new one.
        let batch = [(max, backend(0)), (max + 1, backend(max))];
        assert!(matches!(
            f.dataplane.set_backends(&batch),
            Err(DataplaneError::TooManyBackendAddresses { id, max_backend_addresses, .. })
                if id == max + 1 && max_backend_addresses == max
        ));
        assert_eq!(f.dataplane.backend(max).unwrap(), None, "nothing of a refused batch is written");
        // What the control plane counts against the limit before it programs a change.
        assert_eq!(f.dataplane.backend_addresses(), max as usize);
        assert!(f.dataplane.holds_backend_address(backend(0).addr));
        assert!(!f.dataplane.holds_backend_address(backend(max).addr));
        // Nor kept: backend 0 was its address's only user, so its leaving frees a path.
        f.dataplane.remove_backend(0).unwrap();
        assert_eq!(f.dataplane.backend_addresses(), max as usize - 1);
        assert!(!f.dataplane.holds_backend_address(backend(0).addr));
        f.dataplane
            .set_backends(&[(max + 1, backend(max)), (max, backend(1))])
            .unwrap();
        let ring = f.ring_of(max + 1);
        f.add_vip(vip_key(80, Protocol::Tcp), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        // Each CPU's paths are max_backend_addresses apart, not max_backends.
        // SAFETY: sysconf only reads.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        for cpu in 0..cpus {
            stay_on_cpu(cpu);
            assert_eq!(send(f, f.ingress), (XdpAction::Tx, NEXT_HOP_MAC), "on CPU {cpu}");
        }
    });
}

#[test]
fn a_new_ipv6_backend_address_is_looked_up_at_once() {
    in_lab("nhaddr6", |f| {
        let routed = routed_backend6(3);
        balance_to(f, routed);
        // (MAC, outer IPv6 destination) of an established-flow segment.
        let send6 = |f: &Fixture| {
            let frame = tcp_frame(f.lb_mac, client(1000), vip(80));
            let (action, out) = f.dataplane.test_run(&frame, Some(f.ingress)).unwrap();
            assert_eq!(action, XdpAction::Tx);
            let dst: [u8; 16] = out[38..54].try_into().unwrap();
            (<[u8; 6]>::try_from(&out[..6]).unwrap(), Ipv6Addr::from(dst))
        };
        assert_eq!(send6(f), (NEXT_HOP_MAC, routed));
        // Backend 3 moves onto the local segment: looked up at once, no flush needed.
        f.add_backend(3, L2_BACKEND6);
        assert_eq!(send6(f), (L2_BACKEND_MAC, L2_BACKEND6));
    });
}

#[test]
fn leaving_by_another_interface_is_a_redirect() {
    in_lab("redirect", |f| {
        balance_to(f, routed_backend(3));
        // Arriving on nh0, the route to the backend leaves by lb0.
        tula_net::sysctl::write("net.ipv4.conf.nh0.forwarding", "1").unwrap();
        let nh0 = tula_net::link("nh0").unwrap().index;
        let frame = tcp_frame(f.lb_mac, client(1000), vip(80));
        let before = f.dataplane.counters().unwrap();
        let (action, out) = f.dataplane.test_run(&frame, Some(nh0)).unwrap();
        assert_eq!(action, XdpAction::Redirect);
        assert_eq!(
            out,
            expected_ipip(
                &frame,
                14,
                f.lb_mac,
                NEXT_HOP_MAC,
                LB_ADDR,
                routed_backend(3)
            )
        );
        assert_eq!(
            f.dataplane
                .counters()
                .unwrap()
                .since(&before)
                .get(Counter::Redirect),
            1
        );
        // The same backend from lb0 is a cache miss again (other ingress), and XDP_TX.
        assert_eq!(send(f, f.ingress), (XdpAction::Tx, NEXT_HOP_MAC));
    });
}
