//! A pinned balancer outlives its Dataplane: a new process (here, a new
//! Dataplane) adopts program, maps and links with open_pinned, and teardown
//! removes it all.

mod support;

use std::path::PathBuf;

use support::*;
use tula_dataplane::{
    AttachMode, Backend, Counter, Dataplane, DataplaneError, Dsr, IcmpSettings, LoadOptions, Protocol,
    Scheduler, VipSpec, XdpAction,
};
use tula_net::Netns;

/// Removes the pin directory even if the test fails half way.
struct PinDir(PathBuf);

impl PinDir {
    /// `/sys/fs/bpf/tula-test-<name>-<pid>`.
    fn new(name: &str) -> PinDir {
        PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/tula-test-{name}-{}",
            std::process::id()
        )))
    }

    /// The tests' small sizes, pinned here.
    fn options(&self) -> LoadOptions {
        LoadOptions {
            pin_dir: Some(self.0.clone()),
            ..small_options()
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_pinned_balancer_is_adopted_and_torn_down() {
    let pins = PinDir::new("adopt");
    let ns = Netns::create(&format!("tdp-pin-{}", std::process::id())).unwrap();
    ns.run(|| {
        build_topology();
        let options = pins.options();
        let mut first = Dataplane::load(&options).unwrap();
        assert_eq!(first.attach("lb0").unwrap(), AttachMode::Native);
        for key in ["forwarding", "accept_local"] {
            let value = tula_net::sysctl::read(&format!("net.ipv4.conf.lb0.{key}")).unwrap();
            assert_eq!(
                value, "1",
                "{key}: the kernel must forward what the balancer passes it"
            );
        }
        first
            .set_backend(
                3,
                &Backend {
                    addr: routed_backend(3).into(),
                    alive: true,
                },
            )
            .unwrap();
        let ring = vec![3; first.ring_size() as usize];
        let spec = VipSpec {
            id: 1,
            dsr: Dsr::L3Ipip,
            scheduler: Scheduler::Maglev,
            icmp_echo: false,
        };
        first
            .set_vip(&vip_key(80, Protocol::Tcp), &spec, &ring)
            .unwrap();
        let icmp = IcmpSettings {
            frag_needed: false,
            per_second: 10,
            burst: 3,
        };
        first.set_icmp(&icmp).unwrap();
        drop(first);

        // A second load into the same directory is refused.
        assert!(matches!(
            Dataplane::load(&options),
            Err(DataplaneError::AlreadyPinned { .. })
        ));

        let mut adopted = Dataplane::open_pinned(&pins.0).unwrap();
        assert_eq!(adopted.attached(), vec!["lb0".to_string()]);
        assert_eq!(adopted.ring_size(), small_options().ring_size);
        assert_eq!(
            adopted.vips().unwrap(),
            vec![(vip_key(80, Protocol::Tcp), spec)]
        );
        assert_eq!(adopted.icmp().unwrap(), icmp);
        let lb0 = tula_net::link("lb0").unwrap();
        let frame = tcp_frame(lb0.mac, client(1000), vip(80));
        let (action, out) = adopted.test_run(&frame, Some(lb0.index)).unwrap();
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(
            out,
            expected_ipip(
                &frame,
                14,
                lb0.mac,
                NEXT_HOP_MAC,
                LB_ADDR,
                routed_backend(3)
            )
        );
        // The adopted free-ring list does not hand out the live ring: a swap keeps working.
        adopted
            .set_vip(&vip_key(80, Protocol::Tcp), &spec, &ring)
            .unwrap();
        assert_eq!(
            adopted.test_run(&frame, Some(lb0.index)).unwrap().0,
            XdpAction::Tx
        );

        assert!(
            xdp_attached("lb0"),
            "the pinned link keeps the program on lb0"
        );

        adopted.teardown().unwrap();
        assert!(!pins.0.exists(), "pin directory left behind");
        assert!(!xdp_attached("lb0"), "teardown left the program on lb0");
    })
    .unwrap();
}

/// Whether `ip link` shows an XDP program on `ifname`.
fn xdp_attached(ifname: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["-d", "link", "show", ifname])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn the_pinned_layout_version_is_read_without_adopting_and_an_unknown_one_is_refused() {
    let pins = PinDir::new("layout");
    assert_eq!(tula_dataplane::pinned_build(&pins.0).unwrap(), None);
    let options = pins.options();
    drop(Dataplane::load(&options).unwrap());
    let pinned = tula_dataplane::pinned_build(&pins.0).unwrap().unwrap();
    assert_eq!(pinned.layout_version, tula_dataplane::abi::LAYOUT_VERSION);
    assert_eq!(pinned.ring_size, Some(small_options().ring_size));
    assert!(pinned.interfaces.is_empty());
    assert!(pinned.matches_this_build());

    // As a later build would have pinned it: a layout this build does not know.
    let layout = aya::maps::MapData::from_pin(pins.0.join("layout")).unwrap();
    let mut layout: aya::maps::Array<_, tula_dataplane::abi::Layout> =
        aya::maps::Map::from_map_data(layout).unwrap().try_into().unwrap();
    let mut entry = layout.get(&0, 0).unwrap();
    entry.version = 99;
    layout.set(0, entry, 0).unwrap();
    let pinned = tula_dataplane::pinned_build(&pins.0).unwrap().unwrap();
    assert_eq!(pinned.layout_version, 99);
    assert!(!pinned.matches_this_build());
    let refused = Dataplane::open_pinned(&pins.0).err().expect("refused");
    assert!(
        refused.to_string().contains("map layout version 99 (this build reads"),
        "{refused}"
    );
    entry.version = tula_dataplane::abi::LAYOUT_VERSION;
    layout.set(0, entry, 0).unwrap();
    Dataplane::open_pinned(&pins.0).unwrap().teardown().unwrap();
}

/// bpf/obj/balancer.o as committed at a7b9591, the last build of map layout 2
/// (its connection table an LRU hash of flows).
const LAYOUT2_OBJECT: &[u8] = include_bytes!("fixtures/balancer-layout2.o");

#[test]
fn flows_and_counters_survive_a_switch_to_layout_2_and_the_upgrade_back() {
    let pins = PinDir::new("switch");
    let options = pins.options();
    in_lab_with("switch", &options, |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        f.add_backend(3, routed_backend(3));
        let halves: Vec<u32> = (0..f.dataplane.ring_size()).map(|slot| 1 + slot % 2).collect();
        f.add_vip(vip_key(80, Protocol::Tcp), Dsr::L3Ipip, Scheduler::Maglev, &halves);
        let frames: Vec<Vec<u8>> = (0..200)
            .map(|port| tcp_frame(f.lb_mac, client(10_000 + port), vip(80)))
            .collect();
        for frame in &frames {
            assert_eq!(f.dataplane.test_run(frame, Some(f.ingress)).unwrap().0, XdpAction::Tx);
        }
        let mut before = f.dataplane.conns().unwrap();
        before.sort_by_key(|(flow, _)| flow.client);
        assert_eq!(before.len(), 200);
        assert!(before.iter().any(|(_, c)| c.backend == 1) && before.iter().any(|(_, c)| c.backend == 2));
        let tx = f.dataplane.counters().unwrap().get(Counter::Tx);
        assert_eq!(tx, 200);
        let sent = |dp: &Dataplane| (1..=3).map(|id| dp.backend_traffic(id).unwrap().packets).sum::<u64>();
        assert_eq!(sent(&f.dataplane), 200);

        let older = tula_dataplane::Build {
            object: LAYOUT2_OBJECT,
            layout_version: 2,
        };
        let down = tula_dataplane::switch_build(&pins.0, &older).unwrap();
        assert_eq!(
            (down.from_layout, down.to_layout, down.flows),
            (tula_dataplane::abi::LAYOUT_VERSION, 2, 200)
        );
        assert_eq!(tula_dataplane::pinned_build(&pins.0).unwrap().unwrap().layout_version, 2);
        assert!(!pins.0.join("paths").exists(), "layout 2 has no paths map");

        // Adopting converts it back: the same flows on the same backends, the counters kept.
        let mut adopted = Dataplane::open_pinned(&pins.0).unwrap();
        assert!(tula_dataplane::pinned_build(&pins.0).unwrap().unwrap().matches_this_build());
        let mut after = adopted.conns().unwrap();
        after.sort_by_key(|(flow, _)| flow.client);
        assert_eq!(after, before);
        assert_eq!(adopted.counters().unwrap().get(Counter::Tx), tx);
        assert_eq!(sent(&adopted), 200, "backend counters, through backend_stats and back");
        for gone in ["next_hops", "backend_stats"] {
            assert!(!pins.0.join(gone).exists(), "{gone} left pinned");
        }
        assert!(!pins.0.with_file_name(format!("{}-upgrade", pins.0.file_name().unwrap().to_string_lossy())).exists());

        // Only the table keeps them there: the ring now names backend 3 alone.
        let ring3 = vec![3; adopted.ring_size() as usize];
        let spec = adopted.vips().unwrap()[0].1;
        adopted.set_vip(&vip_key(80, Protocol::Tcp), &spec, &ring3).unwrap();
        for (frame, (_, conn)) in frames.iter().zip(&before) {
            let (action, out) = adopted.test_run(frame, Some(f.ingress)).unwrap();
            assert_eq!(action, XdpAction::Tx);
            assert_eq!(out[33], conn.backend as u8, "the flow changed backend");
        }
        assert_eq!(adopted.counters().unwrap().get(Counter::Tx), 2 * tx);
        assert_eq!(sent(&adopted), 400);
        adopted.teardown().unwrap();
    });
}

/// bpf/obj/balancer.o as committed at 127870b, the last build of map layout 5
/// whose ring map is not mmapable.
const UNMAPPED_RING_OBJECT: &[u8] = include_bytes!("fixtures/balancer-layout5-unmapped-ring.o");

#[test]
fn a_balancer_moved_to_a_layout_5_build_comes_back_with_its_counters() {
    let pins = PinDir::new("unmapped");
    let options = pins.options();
    in_lab_with("unmapped", &options, |f| {
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        let key = vip_key(80, Protocol::Tcp);
        let ones = vec![1; f.dataplane.ring_size() as usize];
        f.add_vip(key, Dsr::L3Ipip, Scheduler::Maglev, &ones);
        let earlier = tcp_frame(f.lb_mac, client(20_001), vip(80));
        assert_eq!(f.dataplane.test_run(&earlier, Some(f.ingress)).unwrap().0, XdpAction::Tx);
        // Down to layout 5, by the build before the ring map became mmapable,
        // then (adopting it) back to this build's layout.
        let older = tula_dataplane::Build {
            object: UNMAPPED_RING_OBJECT,
            layout_version: 5,
        };
        tula_dataplane::switch_build(&pins.0, &older).unwrap();
        let mut adopted = Dataplane::open_pinned(&pins.0).unwrap();
        assert_eq!(
            adopted.backend_traffic(1).unwrap().packets,
            1,
            "backend counters, through layout 5's paths and back"
        );
        let twos = vec![2; adopted.ring_size() as usize];
        let spec = adopted.vips().unwrap()[0].1;
        adopted.set_vip(&key, &spec, &twos).unwrap();
        assert_eq!(adopted.vip_ring(&key).unwrap().unwrap().1, twos);
        let frame = tcp_frame(f.lb_mac, client(20_000), vip(80));
        let (action, out) = adopted.test_run(&frame, Some(f.ingress)).unwrap();
        assert_eq!(action, XdpAction::Tx);
        assert_eq!(out[33], 2, "a new flow follows the ring written into the converted ring map");
        adopted.teardown().unwrap();
    });
}

#[test]
fn a_second_handle_on_the_pinned_balancer_keeps_the_writers_hops() {
    let pins = PinDir::new("hops");
    let options = pins.options();
    in_lab_with("hops", &options, |f| {
        stay_on_cpu0();
        // Hops out of id order: address 1's backend leaves and comes back after address 3's.
        f.add_backend(1, routed_backend(1));
        f.add_backend(2, routed_backend(2));
        f.dataplane.remove_backend(1).unwrap();
        f.add_backend(3, routed_backend(3));
        f.add_backend(1, routed_backend(1));
        // As the daemon's status reader opens it, beside the writer.
        let reader = Dataplane::open_pinned(&pins.0).unwrap();
        let ring = f.ring_of(1);
        f.add_vip(vip_key(80, Protocol::Tcp), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        f.add_backend(4, routed_backend(1));
        let ring = f.ring_of(4);
        f.add_vip(vip_key(81, Protocol::Tcp), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let send = |f: &Fixture, port| {
            let frame = tcp_frame(f.lb_mac, client(1000), vip(port));
            let (action, out) = f.dataplane.test_run(&frame, Some(f.ingress)).unwrap();
            assert_eq!(action, XdpAction::Tx);
            <[u8; 6]>::try_from(&out[..6]).unwrap()
        };
        assert_eq!(send(f, 80), NEXT_HOP_MAC);
        tula_net::add_neighbour("lb0", NEXT_HOP, [0x02, 0, 0, 0, 0, 0x99]).unwrap();
        assert_eq!(
            send(f, 81),
            NEXT_HOP_MAC,
            "backends 1 and 4 share one hop: the reader renumbered nothing"
        );
        drop(reader);
    });
}

/// (MAC, outer IPv6 destination) of a segment to VIP port `port`.
fn send6(f: &Fixture, port: u16) -> ([u8; 6], std::net::Ipv6Addr) {
    let frame = tcp_frame(f.lb_mac, client(1000), vip(port));
    let (action, out) = f.dataplane.test_run(&frame, Some(f.ingress)).unwrap();
    assert_eq!(action, XdpAction::Tx);
    let dst: [u8; 16] = out[38..54].try_into().unwrap();
    (<[u8; 6]>::try_from(&out[..6]).unwrap(), std::net::Ipv6Addr::from(dst))
}

#[test]
fn a_path_filled_for_another_ipv6_address_is_not_taken() {
    let pins = PinDir::new("tag6");
    let options = pins.options();
    in_lab_with("tag6", &options, |f| {
        stay_on_cpu0();
        let routed = routed_backend6(3);
        f.add_backend(3, routed);
        f.add_backend(4, routed);
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, Protocol::Tcp), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        let ring = f.ring_of(4);
        f.add_vip(vip_key(81, Protocol::Tcp), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        assert_eq!(send6(f, 81), (NEXT_HOP_MAC, routed));
        // Cached: the tag user space gave backend 4 is the one the path records.
        let next_hop6 = NEXT_HOP6.to_string();
        ip(&["-6", "neigh", "replace", &next_hop6, "lladdr", "02:00:00:00:00:99", "dev", "lb0"]);
        assert_eq!(send6(f, 81), (NEXT_HOP_MAC, routed), "cached");
        ip(&["-6", "neigh", "replace", &next_hop6, "lladdr", "02:00:00:00:00:02", "dev", "lb0"]);
        // Between the two writes of an address change: backend 3's new address
        // is in backends6, its entry still names the old address's hop.
        let data = aya::maps::MapData::from_pin(pins.0.join("backends6")).unwrap();
        let mut backends6: aya::maps::Array<_, tula_dataplane::abi::Backend6> =
            aya::maps::Map::from_map_data(data).unwrap().try_into().unwrap();
        let moved = tula_dataplane::abi::Backend6 {
            addr: tula_dataplane::abi::addr6_to_raw(L2_BACKEND6),
        };
        backends6.set(3, moved, 0).unwrap();
        f.dataplane.flush_next_hops().unwrap();
        assert_eq!(send6(f, 80), (L2_BACKEND_MAC, L2_BACKEND6));
        assert_eq!(
            send6(f, 81),
            (NEXT_HOP_MAC, routed),
            "backend 4 took the shared path filled for backend 3's new address"
        );
    });
}

/// Makes map `name` of the balancer pinned in `pins` read-only for system
/// calls (BPF_MAP_FREEZE), for good: every later write to it fails.
fn freeze(pins: &PinDir, name: &str) {
    use std::os::fd::{AsFd, AsRawFd};
    let data = aya::maps::MapData::from_pin(pins.0.join(name)).unwrap();
    // union bpf_attr for BPF_MAP_FREEZE: the map's fd, then zeros.
    let mut attr = [0u32; 32];
    attr[0] = data.fd().as_fd().as_raw_fd() as u32;
    const BPF_MAP_FREEZE: libc::c_long = 22;
    // SAFETY: attr outlives the call, and the size passed is its own.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_FREEZE, attr.as_mut_ptr(), std::mem::size_of_val(&attr)) };
    assert_eq!(rc, 0, "freezing {name}: {}", std::io::Error::last_os_error());
}

#[test]
fn a_refused_backend_write_leaves_every_backend_as_it_was() {
    let pins = PinDir::new("refused");
    let options = pins.options();
    in_lab_with("refused", &options, |f| {
        stay_on_cpu0();
        let routed = routed_backend6(3);
        f.add_backend(3, routed);
        let ring = f.ring_of(3);
        f.add_vip(vip_key(80, Protocol::Tcp), Dsr::L3Ipip, Scheduler::Maglev, &ring);
        assert_eq!(send6(f, 80), (NEXT_HOP_MAC, routed));
        // The entries can no longer be written, the IPv6 addresses still can.
        freeze(&pins, "backends");
        let moved = Backend {
            addr: L2_BACKEND6.into(),
            alive: true,
        };
        assert!(f.dataplane.set_backends(&[(3, moved), (4, moved)]).is_err());
        let kept = Backend {
            addr: routed.into(),
            alive: true,
        };
        assert_eq!(f.dataplane.backend(3).unwrap(), Some(kept), "backend 3 after a refused write");
        assert_eq!(f.dataplane.backend(4).unwrap(), None, "backend 4 after a refused write");
        // (flush_next_hops writes the entries too.) The cached path expires
        // (NEXT_HOP_TTL_JIFFIES: at most 250 ms) and is filled from what the maps hold.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(send6(f, 80), (NEXT_HOP_MAC, routed), "a segment after a refused write");
    });
}
