//! The tunnel check against a real backend: set up by `tula decap setup
//! --method xdp` (the library), with a server on the VIP. The tunnel probe
//! passes through the IPIP path; once the VIP is taken off the backend's
//! `lo`, the tunnel check fails while a plain TCP check of the backend's own
//! address still passes. That is the failure only the tunnel check sees.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use support::*;
use tula_decap::program::{self, PinnedDecap};
use tula_decap::{Method, SetupOptions};
use tula_health::{Checker, HealthState, Outcome};

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const PLAIN_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
/// Served by the backend's IPv6 address: IP6IP6.
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x10);
/// An IPv4 VIP served by the backend's IPv6 address: IPv4 in IPv6.
const MIXED_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 12);

/// The decap setup's state root; torn down (program detached, sysctls back) on drop.
struct Decap<'a> {
    lab: &'a Lab,
    root: PathBuf,
}

impl<'a> Decap<'a> {
    /// `tula decap setup --method xdp` of `vips` on the backend namespace's
    /// bk0, its state under a root named after `tag`; and where it pinned the program.
    fn setup(lab: &'a Lab, tag: &str, vips: &[IpAddr]) -> (Decap<'a>, PathBuf) {
        let root = std::env::temp_dir().join(format!("tula-health-{tag}-decap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let pin_dir = lab
            .backends
            .run(|| {
                let mut options = SetupOptions::new(Method::Xdp, vips.iter().copied());
                options.interface = Some("bk0".into());
                options.root = root.clone();
                tula_decap::setup(&options).expect("tula decap setup --method xdp");
                program::pin_dir("bk0").unwrap()
            })
            .unwrap();
        (Decap { lab, root }, pin_dir)
    }
}

impl Drop for Decap<'_> {
    fn drop(&mut self) {
        let _ = self.lab.backends.run(|| tula_decap::teardown(&self.root));
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Two VIPs on port 80 served by `backend`, each (name, address, check type)
/// checked every 200 ms (timeout 100 ms, rise and fall 2), and a checker running them.
fn check_two_vips(
    lab: &Lab,
    vips: [(&str, IpAddr, &str); 2],
    backend: IpAddr,
) -> (std::sync::Arc<tula_control::Control>, tokio::runtime::Runtime, Checker) {
    let control = lab.start_control();
    let check = "interval = \"200ms\", timeout = \"100ms\", rise = 2, fall = 2";
    let text: String = vips
        .iter()
        .map(|(name, address, kind)| {
            format!(
                "[[vip]]\nname = \"{name}\"\naddress = \"{address}\"\nport = 80\n\
                 health_check = {{ type = \"{kind}\", {check} }}\nbackends = [{{ address = \"{backend}\" }}]\n"
            )
        })
        .collect();
    lab.apply(&control, &text);
    let runtime = lab.runtime();
    let checker = Checker::spawn(control.clone(), runtime.handle());
    (control, runtime, checker)
}

#[test]
fn the_tunnel_check_catches_a_backend_that_only_answers_on_its_own_address() {
    let lab = Lab::new("tunnel");
    let (decap, pin_dir) = Decap::setup(&lab, "tunnel", &[VIP.into(), PLAIN_VIP.into()]);
    // One server for the VIP (reached through the tunnel) and the backend's own address.
    let _server = lab.backends.run(|| TcpListener::bind("0.0.0.0:80")).unwrap().unwrap();

    let (control, _runtime, checker) =
        check_two_vips(&lab, [("tunnel", VIP.into(), "tunnel"), ("plain", PLAIN_VIP.into(), "tcp")], BACKEND_HOST.into());
    let backend: IpAddr = BACKEND_HOST.into();
    let passes = |vip: &str| checker.backend(vip, backend).map_or(0, |b| b.counts.passed);

    let passing = wait_until(Duration::from_secs(5), || {
        passes("tunnel") >= 3 && passes("plain") >= 3
    });
    let tunnel = checker.backend("tunnel", backend).unwrap();
    assert!(
        passing.is_some(),
        "the tunnel check does not pass on a sound backend: {tunnel:#?}"
    );
    let last = tunnel.last_result.unwrap();
    assert!(last.detail.contains("through the tunnel"), "{last:?}");
    let decapsulated = || {
        lab.backends
            .run(|| PinnedDecap::open(&pin_dir).unwrap().counters().unwrap())
            .unwrap()
    };
    assert!(
        decapsulated().decapsulated_packets >= 6,
        "the backend decapsulated {} packets: the probes did not come through the tunnel",
        decapsulated().decapsulated_packets
    );

    // Break the VIP binding only: the backend's own address still answers.
    lab.backends
        .run(|| tula_net::del_address("lo", VIP.into(), 32))
        .unwrap()
        .unwrap();
    let down = wait_until(Duration::from_secs(5), || {
        !healthy(&control, "tunnel", BACKEND_HOST)
    })
    .expect("the tunnel check never marked the broken backend down");
    println!("tunnel check: down {down:?} after the VIP left lo");
    let tunnel = checker.backend("tunnel", backend).unwrap();
    assert_eq!(tunnel.state, HealthState::Down);
    let cause = &tunnel.history.last().unwrap().cause;
    assert_eq!(cause.outcome, Outcome::Fail);
    assert!(cause.detail.contains("no answer within 100ms"), "{cause:?}");
    let plain_before = passes("plain");
    std::thread::sleep(Duration::from_millis(600));
    let plain = checker.backend("plain", backend).unwrap();
    assert_eq!(
        plain.state,
        HealthState::Up,
        "the plain tcp check should still pass: {plain:#?}"
    );
    assert!(plain.counts.passed >= plain_before + 2 && plain.counts.failed == 0);
    assert!(healthy(&control, "plain", BACKEND_HOST));

    // Fixed: the VIP is back on lo, and so is the backend.
    lab.backends
        .run(|| tula_net::add_address("lo", VIP.into(), 32))
        .unwrap()
        .unwrap();
    wait_until(Duration::from_secs(5), || {
        healthy(&control, "tunnel", BACKEND_HOST)
    })
    .expect("the tunnel check never brought the repaired backend back");
    assert_eq!(
        checker.counts().errors,
        0,
        "no probe should have been unable to run"
    );
    checker.stop();
    drop(decap);
}

#[test]
fn the_tunnel_check_reaches_ipv6_backends_in_ip6ip6_and_ipv4_in_ipv6() {
    let lab = Lab::new("tunnel6");
    let (decap, pin_dir) = Decap::setup(&lab, "tunnel6", &[MIXED_VIP.into(), VIP6.into()]);
    // One dual-stack listener: both VIPs, reached through the tunnels.
    let _server = lab.backends.run(|| TcpListener::bind("[::]:80")).unwrap().unwrap();

    let (control, _runtime, checker) = check_two_vips(
        &lab,
        [("ip6ip6", VIP6.into(), "tunnel"), ("ip4in6", MIXED_VIP.into(), "tunnel")],
        BACKEND_HOST6.into(),
    );
    let backend: IpAddr = BACKEND_HOST6.into();
    let passes = |vip: &str| checker.backend(vip, backend).map_or(0, |b| b.counts.passed);
    let passing = wait_until(Duration::from_secs(5), || passes("ip6ip6") >= 3 && passes("ip4in6") >= 3);
    assert!(passing.is_some(), "tunnel checks to an IPv6 backend do not pass: {:#?}", checker.snapshot());
    for vip in ["ip6ip6", "ip4in6"] {
        let last = checker.backend(vip, backend).unwrap().last_result.unwrap();
        assert!(last.detail.contains("through the tunnel to 2001:db8::2"), "{vip}: {last:?}");
    }
    // Each probe (SYN, ACK, RST at least) came out of an IPv6 tunnel at the backend.
    let decapsulated = lab.backends.run(|| PinnedDecap::open(&pin_dir).unwrap().counters().unwrap()).unwrap();
    assert!(decapsulated.decapsulated_packets >= 12, "{decapsulated}");

    // The IPv6 VIP leaves lo: its check fails, the IPv4-in-IPv6 one goes on passing.
    lab.backends.run(|| tula_net::del_address("lo", VIP6.into(), 128)).unwrap().unwrap();
    wait_until(Duration::from_secs(5), || !healthy(&control, "ip6ip6", BACKEND_HOST6))
        .expect("the IP6IP6 tunnel check never marked the broken backend down");
    let mixed_before = passes("ip4in6");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(checker.backend("ip4in6", backend).unwrap().state, HealthState::Up);
    assert!(passes("ip4in6") >= mixed_before + 2);
    assert_eq!(checker.counts().errors, 0, "no probe should have been unable to run");
    checker.stop();
    drop(decap);
}
