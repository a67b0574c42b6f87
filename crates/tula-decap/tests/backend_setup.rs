//! `tula decap setup|verify|teardown` against real network namespaces: each
//! test builds its own namespaces (deleted on drop) and its own --root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tula_decap::program::{self, DecapProgram, PinnedDecap};
use tula_decap::{Change, CheckStatus, DecapError, ManualOptions, Method, Persist, SetupOptions, VerifyOptions};
use tula_net::Netns;

const BACKEND: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const LB: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 50, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

/// A scratch directory used as --root; removed on drop.
struct Root(PathBuf);

impl Root {
    fn new(test: &str) -> Root {
        let dir = std::env::temp_dir().join(format!("tula-decap-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Root(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self, relative: &str) -> PathBuf {
        self.0.join(relative)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A backend namespace with uplink `bk0` (198.18.1.2/24) to a peer namespace
/// (the load balancer's side, `lb0` 198.18.1.1/24). Both deleted on drop.
struct Topology {
    backend: Netns,
    peer: Netns,
}

fn topology(test: &str) -> Topology {
    let pid = std::process::id();
    let backend = Netns::create(&format!("tdc-{test}-bk-{pid}")).unwrap();
    let peer = Netns::create(&format!("tdc-{test}-lb-{pid}")).unwrap();
    backend
        .run(|| {
            tula_net::add_veth("bk0", "lb0", Some(&peer))?;
            tula_net::add_address("bk0", IpAddr::V4(BACKEND), 24)?;
            tula_net::set_up("bk0")?;
            tula_net::add_route(Ipv4Addr::UNSPECIFIED, 0, Some(LB), Some("bk0"))
        })
        .unwrap()
        .unwrap();
    peer.run(|| {
        tula_net::add_address("lb0", IpAddr::V4(LB), 24)?;
        tula_net::set_up("lb0")?;
        // LAB-NOTES: partial checksums do not survive XDP on veth.
        tula_net::set_offload("lb0", tula_net::Offload::TxChecksum, false)
    })
    .unwrap()
    .unwrap();
    Topology { backend, peer }
}

/// Sysctls as a stock distribution leaves them, so setup has work to do.
const STOCK_SYSCTLS: [(&str, &str); 4] = [
    ("net.ipv4.conf.all.arp_ignore", "0"),
    ("net.ipv4.conf.all.arp_announce", "0"),
    ("net.ipv4.conf.all.rp_filter", "2"),
    ("net.ipv4.conf.bk0.rp_filter", "1"),
];

fn set_stock_sysctls() {
    for (key, value) in STOCK_SYSCTLS {
        tula_net::sysctl::write(key, value).unwrap();
    }
}

fn sysctl_values() -> Vec<(String, String)> {
    STOCK_SYSCTLS.iter().map(|(k, _)| (k.to_string(), tula_net::sysctl::read(k).unwrap())).collect()
}

fn addresses_on(link: &str) -> Vec<Ipv4Addr> {
    tula_net::addresses()
        .unwrap()
        .into_iter()
        .filter(|a| a.link == link)
        .filter_map(|a| match a.addr {
            IpAddr::V4(v4) => Some(v4),
            _ => None,
        })
        .collect()
}

/// The contents and mode of the file at a path ending in `name` that `plan` writes.
fn written(plan: &tula_decap::Plan, name: &str) -> Option<(String, u32)> {
    plan.changes.iter().find_map(|c| match c {
        Change::WriteFile { path, contents, mode, .. } if path.ends_with(name) => Some((contents.clone(), *mode)),
        _ => None,
    })
}

/// Runs teardown in `ns` when a test fails half-way, so no pins are left.
struct TeardownOnDrop<'a> {
    ns: &'a Netns,
    root: &'a Root,
}

impl Drop for TeardownOnDrop<'_> {
    fn drop(&mut self) {
        if self.root.file("var/lib/tula/decap.json").exists() {
            let _ = self.ns.run(|| tula_decap::teardown(self.root.path()));
        }
    }
}

fn xdp_options(root: &Root) -> SetupOptions {
    let mut opts = SetupOptions::new(Method::Xdp, vec![VIP, VIP2]);
    opts.root = root.path().to_path_buf();
    opts.tula_binary = PathBuf::from("/usr/local/bin/tula");
    opts
}

/// Sends `count` client datagrams to VIP:port wrapped in IPIP from the peer
/// namespace: a raw IPPROTO_IPIP socket makes the kernel add the outer header.
fn send_tunnelled(peer: &Netns, count: usize, port: u16) {
    peer.run(|| {
        // SAFETY: plain socket calls on a fresh fd, closed at the end.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_IPIP);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let dst = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(BACKEND.octets()) },
                sin_zero: [0; 8],
            };
            for i in 0..count {
                let inner = client_datagram(port, format!("hello {i}").as_bytes());
                let sent = libc::sendto(
                    fd,
                    inner.as_ptr().cast(),
                    inner.len(),
                    0,
                    (&dst as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as u32,
                );
                assert_eq!(sent, inner.len() as isize, "sendto: {}", std::io::Error::last_os_error());
            }
            libc::close(fd);
        }
    })
    .unwrap();
}

/// IPv4 + UDP from CLIENT:40000 to VIP:port; UDP checksum 0 (none).
fn client_datagram(port: u16, data: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + data.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend(total.to_be_bytes());
    p.extend([0, 1, 0x40, 0, 64, 17, 0, 0]);
    p.extend(CLIENT.octets());
    p.extend(VIP.octets());
    let mut sum: u32 = p.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend(40000u16.to_be_bytes());
    p.extend(port.to_be_bytes());
    p.extend(((8 + data.len()) as u16).to_be_bytes());
    p.extend([0, 0]);
    p.extend(data);
    p
}

fn check<'a>(checks: &'a [tula_decap::Check], name: &str) -> &'a tula_decap::Check {
    checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
}

fn failing(checks: &[tula_decap::Check]) -> Vec<String> {
    checks.iter().filter(|c| c.status == CheckStatus::Fail).map(|c| c.to_string()).collect()
}

#[test]
fn xdp_setup_is_idempotent_verifiable_and_undone_exactly() {
    let topo = topology("xdp");
    let root = Root::new("xdp");
    let _cleanup = TeardownOnDrop { ns: &topo.backend, root: &root };
    // An operator's own sysctl file of the same name: teardown must bring it back.
    let own_sysctl_file = "# the operator's own file\nkernel.panic = 10\n";
    std::fs::create_dir_all(root.file("etc/sysctl.d")).unwrap();
    std::fs::write(root.file("etc/sysctl.d/99-dsr.conf"), own_sysctl_file).unwrap();

    let (before, plan, report, second, listener) = topo
        .backend
        .run(|| {
            set_stock_sysctls();
            let before = sysctl_values();
            let opts = xdp_options(&root);
            let plan = tula_decap::plan_setup(&opts).unwrap();
            let report = tula_decap::apply(&plan, root.path()).unwrap();
            let second = tula_decap::plan_setup(&opts).unwrap();
            // Bound after setup: the VIP must be on lo first.
            let listener = UdpSocket::bind(SocketAddrV4::new(VIP, 5353)).unwrap();
            (before, plan, report, second, listener)
        })
        .unwrap();

    assert_eq!(plan.interface, "bk0", "the default route's device");
    assert_eq!(report.applied.len(), plan.changes.len());
    let pin_dir = topo.backend.run(|| program::pin_dir("bk0")).unwrap().unwrap();
    let expected_head = [
        Change::SetSysctl { key: "net.ipv4.conf.all.arp_ignore".into(), from: Some("0".into()), to: "1".into() },
        Change::SetSysctl { key: "net.ipv4.conf.all.arp_announce".into(), from: Some("0".into()), to: "2".into() },
        Change::SetSysctl { key: "net.ipv4.conf.bk0.rp_filter".into(), from: Some("1".into()), to: "0".into() },
        Change::SetSysctl { key: "net.ipv4.conf.all.rp_filter".into(), from: Some("2".into()), to: "0".into() },
        Change::AddAddress { link: "lo".into(), addr: VIP.into(), prefix: 32 },
        Change::AddAddress { link: "lo".into(), addr: VIP2.into(), prefix: 32 },
    ];
    assert_eq!(plan.changes[..6], expected_head[..]);
    let attach = Change::AttachDecap {
        interface: "bk0".into(),
        pin_dir: pin_dir.clone(),
        local: vec![BACKEND.into()],
        vips: vec![VIP.into(), VIP2.into()],
    };
    assert!(plan.changes.contains(&attach), "{:#?}", plan.changes);
    let unit = "# Written by `tula decap setup --method xdp`; `tula decap teardown` removes it.\n\
                [Unit]\n\
                Description=tula: decapsulate Layer 3 DSR traffic (IPIP) in XDP on bk0\n\
                Wants=network-online.target\n\
                After=network-online.target\n\
                \n\
                [Service]\n\
                Type=oneshot\n\
                RemainAfterExit=yes\n\
                ExecStart=/usr/local/bin/tula decap setup --method xdp --interface bk0 --vip 203.0.113.10 --vip 203.0.113.11\n\
                \n\
                [Install]\n\
                WantedBy=multi-user.target\n";
    assert_eq!(std::fs::read_to_string(root.file("etc/systemd/system/tula-decap.service")).unwrap(), unit);
    assert_eq!(
        std::fs::read_link(root.file("etc/systemd/system/multi-user.target.wants/tula-decap.service")).unwrap(),
        Path::new("/etc/systemd/system/tula-decap.service")
    );
    let sysctl_file = std::fs::read_to_string(root.file("etc/sysctl.d/99-dsr.conf")).unwrap();
    assert!(sysctl_file.ends_with(
        "net.ipv4.conf.all.arp_ignore = 1\n\
         net.ipv4.conf.all.arp_announce = 2\n\
         net.ipv4.conf.bk0.rp_filter = 0\n\
         net.ipv4.conf.all.rp_filter = 0\n"
    ), "{sysctl_file}");
    assert!(root.file("var/lib/tula/decap.json").exists());

    // Applied for real, in the namespace.
    let (after, lo, attached_to, bk0) = topo
        .backend
        .run(|| {
            let pinned = PinnedDecap::open(&pin_dir).expect("pinned");
            (sysctl_values(), addresses_on("lo"), pinned.attached_ifindex().unwrap(), tula_net::link("bk0").unwrap().index)
        })
        .unwrap();
    assert_eq!(after.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["1", "2", "0", "0"]);
    assert!(lo.contains(&VIP) && lo.contains(&VIP2), "{lo:?}");
    assert_eq!(attached_to, bk0);
    let busy = topo.backend.run(|| DecapProgram::load().and_then(|mut p| p.attach("bk0"))).unwrap();
    let busy = busy.expect_err("bk0 already has the pinned program");
    assert!(busy.to_string().contains("another XDP program is attached to bk0"), "{busy}");

    // Idempotent: nothing left to do, and applying that changes no file.
    // (Pins that tests running in parallel left behind are not ours.)
    let own = |changes: &[Change]| changes.iter().filter(|c| !matches!(c, Change::RemoveStalePins { .. })).count();
    assert_eq!(own(&second.changes), 0, "second run wants {:#?}", second.changes);
    let state_before = std::fs::read_to_string(root.file("var/lib/tula/decap.json")).unwrap();
    let again = topo.backend.run(|| tula_decap::apply(&second, root.path()).unwrap()).unwrap();
    assert_eq!(own(&again.applied), 0);
    assert_eq!(std::fs::read_to_string(root.file("var/lib/tula/decap.json")).unwrap(), state_before);

    // Before traffic, verify fails on exactly the traffic check.
    let verify_opts = VerifyOptions::new(root.path());
    let checks = topo.backend.run(|| tula_decap::verify(&verify_opts).unwrap()).unwrap();
    assert_eq!(check(&checks, "decapsulated packets seen").status, CheckStatus::Fail);
    assert_eq!(failing(&checks).len(), 1, "{:#?}", failing(&checks));

    // End to end: IPIP from the peer arrives decapsulated at a socket bound to the VIP.
    send_tunnelled(&topo.peer, 3, 5353);
    listener.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 256];
    for i in 0..3 {
        let (n, from) = listener.recv_from(&mut buf).expect("a decapsulated datagram within 3 s");
        assert_eq!(&buf[..n], format!("hello {i}").as_bytes());
        assert_eq!(from, std::net::SocketAddr::from((CLIENT, 40000)), "the client's address, not the LB's");
    }
    drop(listener);

    let checks = topo.backend.run(|| tula_decap::verify(&verify_opts).unwrap()).unwrap();
    assert!(failing(&checks).is_empty(), "{:#?}", failing(&checks));
    let traffic = check(&checks, "decapsulated packets seen");
    assert!(traffic.detail.starts_with("decapsulated 3 packets"), "{}", traffic.detail);
    for name in [
        "XDP decapsulation attached to bk0",
        "VIP 203.0.113.10 on lo",
        "VIP 203.0.113.11 on lo",
        "net.ipv4.conf.all.arp_ignore = 1",
        "net.ipv4.conf.all.arp_announce = 2",
        "net.ipv4.conf.bk0.rp_filter = 0",
        "net.ipv4.conf.all.rp_filter = 0",
        "boot unit tula-decap.service installed and enabled",
    ] {
        assert_eq!(check(&checks, name).status, CheckStatus::Pass, "{name}");
    }

    // A deliberately broken backend: rp_filter back on.
    let checks = topo
        .backend
        .run(|| {
            tula_net::sysctl::write("net.ipv4.conf.all.rp_filter", "1").unwrap();
            let checks = tula_decap::verify(&verify_opts).unwrap();
            tula_net::sysctl::write("net.ipv4.conf.all.rp_filter", "0").unwrap();
            checks
        })
        .unwrap();
    let failed = failing(&checks);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(failed[0].contains("net.ipv4.conf.all.rp_filter = 0: it is 1"), "{}", failed[0]);
    assert!(failed[0].contains("fix: sysctl -w net.ipv4.conf.all.rp_filter=0"), "{}", failed[0]);

    // Teardown restores everything exactly.
    let (report, restored, lo, reattach) = topo
        .backend
        .run(|| {
            let report = tula_decap::teardown(root.path()).unwrap();
            // A fresh attach succeeds only if no XDP program is left on bk0.
            let reattach = DecapProgram::load().and_then(|mut p| p.attach("bk0"));
            (report, sysctl_values(), addresses_on("lo"), reattach)
        })
        .unwrap();
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    assert_eq!(restored, before);
    assert!(!lo.contains(&VIP) && !lo.contains(&VIP2), "{lo:?}");
    assert!(!pin_dir.exists());
    reattach.expect("bk0 has no XDP program left");
    assert_eq!(std::fs::read_to_string(root.file("etc/sysctl.d/99-dsr.conf")).unwrap(), own_sysctl_file);
    assert!(!root.file("etc/systemd/system/tula-decap.service").exists());
    assert!(root.file("etc/systemd/system/multi-user.target.wants/tula-decap.service").symlink_metadata().is_err());
    assert!(!root.file("var/lib/tula/decap.json").exists());
}

#[test]
fn kernel_dry_run_prints_the_full_list_with_file_contents() {
    let topo = topology("kdry");
    let root = Root::new("kdry");
    let (text, plan, after) = topo
        .backend
        .run(|| {
            set_stock_sysctls();
            let mut opts = SetupOptions::new(Method::Kernel, vec![VIP, VIP2]);
            opts.root = root.path().to_path_buf();
            opts.persist = Persist::Networkd;
            let plan = tula_decap::plan_setup(&opts).unwrap();
            (tula_decap::cli::render_plan(&plan, true), plan, sysctl_values())
        })
        .unwrap();
    let r = root.path().display();
    let expected = format!(
        "backend setup, method kernel (ipip module, tunl0), uplink bk0
would make (dry run, nothing changed) 13 change(s):
  1. load kernel module ipip  [modprobe ipip]
  2. create IPIP tunnel tunl0 with local 198.18.1.2 unless loading the module made it  [ip link show tunl0 >/dev/null 2>&1 || ip tunnel add tunl0 mode ipip local 198.18.1.2]
  3. set net.ipv4.conf.all.arp_ignore = 1 (was 0)  [sysctl -w net.ipv4.conf.all.arp_ignore=1]
  4. set net.ipv4.conf.all.arp_announce = 2 (was 0)  [sysctl -w net.ipv4.conf.all.arp_announce=2]
  5. set net.ipv4.conf.tunl0.rp_filter = 0 (not set yet)  [sysctl -w net.ipv4.conf.tunl0.rp_filter=0]
  6. set net.ipv4.conf.all.rp_filter = 0 (was 2)  [sysctl -w net.ipv4.conf.all.rp_filter=0]
  7. add 203.0.113.10/32 to tunl0  [ip addr add 203.0.113.10/32 dev tunl0]
  8. add 203.0.113.11/32 to tunl0  [ip addr add 203.0.113.11/32 dev tunl0]
  9. bring tunl0 up  [ip link set tunl0 up]
 10. write new file {r}/etc/sysctl.d/99-dsr.conf (mode 644):
    | # Written by `tula decap setup` for Layer 3 DSR; `tula decap teardown` removes it.
    | # arp_ignore/arp_announce: never answer ARP for a VIP, nor use one as ARP source.
    | # rp_filter: decapsulated packets carry the client's address as source, which
    | # does not match the route back through the receiving interface.
    | net.ipv4.conf.all.arp_ignore = 1
    | net.ipv4.conf.all.arp_announce = 2
    | net.ipv4.conf.tunl0.rp_filter = 0
    | net.ipv4.conf.all.rp_filter = 0
 11. write new file {r}/etc/modules-load.d/tula-ipip.conf (mode 644):
    | # Written by `tula decap setup`: the ipip module creates tunl0, which decapsulates L3 DSR traffic.
    | ipip
 12. write new file {r}/etc/systemd/network/90-tula-tunl0.netdev (mode 644):
    | # Written by `tula decap setup`: IPIP tunnel for Layer 3 DSR.
    | [NetDev]
    | Name=tunl0
    | Kind=ipip
    |
    | [Tunnel]
    | Local=198.18.1.2
    | Remote=any
    | Independent=yes
 13. write new file {r}/etc/systemd/network/90-tula-tunl0.network (mode 644):
    | # Written by `tula decap setup`: the VIPs this backend serves over the IPIP tunnel.
    | [Match]
    | Name=tunl0
    |
    | [Link]
    | RequiredForOnline=no
    |
    | [Network]
    | LinkLocalAddressing=no
    | ConfigureWithoutCarrier=yes
    | Address=203.0.113.10/32
    | Address=203.0.113.11/32
"
    );
    assert!(text.starts_with(&expected), "got:\n{text}\nwanted:\n{expected}");
    if !Path::new("/sys/module/ipip").exists() {
        assert!(text.contains("note: the ipip module is not available on this host"), "{text}");
        assert!(text.contains("`--method xdp` works without it"), "{text}");
    }
    // Nothing was changed: no files, no state, the stock sysctls.
    assert!(std::fs::read_dir(root.path()).unwrap().next().is_none(), "the dry run wrote under --root");
    assert_eq!(after.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["0", "0", "2", "1"]);
    // The same plan as JSON names every change.
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["changes"].as_array().unwrap().len(), 13);
    assert_eq!(json["changes"][0], serde_json::json!({"change": "load_module", "name": "ipip"}));
}

/// The netplan file for backend 198.18.1.2 and VIP 203.0.113.10.
const NETPLAN_TUNL0: &str = "# Written by `tula decap setup`: IPIP tunnel and VIPs for Layer 3 DSR.
network:
  version: 2
  tunnels:
    tunl0:
      mode: ipip
      local: 198.18.1.2
      remote: 0.0.0.0
      addresses:
        - 203.0.113.10/32
";

#[test]
fn kernel_netplan_file_when_netplan_is_in_use() {
    let topo = topology("kplan");
    let root = Root::new("kplan");
    std::fs::create_dir_all(root.file("etc/netplan")).unwrap();
    std::fs::write(root.file("etc/netplan/50-cloud-init.yaml"), "network: {version: 2}\n").unwrap();
    std::fs::create_dir_all(root.file("usr/sbin")).unwrap();
    std::fs::write(root.file("usr/sbin/netplan"), "").unwrap();
    let plan = topo
        .backend
        .run(|| {
            let mut opts = SetupOptions::new(Method::Kernel, vec![VIP]);
            opts.root = root.path().to_path_buf();
            tula_decap::plan_setup(&opts).unwrap()
        })
        .unwrap();
    assert_eq!(plan.persist, Persist::Netplan, "detected");
    let netplan = written(&plan, "etc/netplan/90-tula-dsr.yaml").expect("a netplan file in the plan");
    assert_eq!(netplan.0, NETPLAN_TUNL0);
    assert_eq!(netplan.1, 0o600, "netplan refuses world-readable files");
    assert!(!plan.changes.iter().any(|c| matches!(c, Change::WriteFile { path, .. } if path.extension().is_some_and(|e| e == "netdev"))));
}

#[test]
fn kernel_method_without_the_ipip_or_ip6_tunnel_module_fails_clearly_and_changes_nothing() {
    let topo = topology6("knomod");
    let root = Root::new("knomod");
    let setup = |vip: IpAddr| {
        topo.backend
            .run(|| {
                set_stock_sysctls();
                let mut opts = SetupOptions::new(Method::Kernel, [vip]);
                opts.root = root.path().to_path_buf();
                (tula_decap::setup(&opts), sysctl_values(), addresses6_on("lo"))
            })
            .unwrap()
    };
    for (vip, module) in [(IpAddr::from(VIP), "ipip"), (IpAddr::from(VIP6), "ip6_tunnel")] {
        if Path::new("/sys/module").join(module).exists() {
            eprintln!("skipped: this host has the {module} module");
            continue;
        }
        let (result, after, lo) = setup(vip);
        let err = result.expect_err("no such module here");
        match module {
            "ipip" => assert!(matches!(err, DecapError::NoIpipModule { .. }), "{err:?}"),
            _ => assert!(matches!(err, DecapError::NoIp6TunnelModule { .. }), "{err:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(&format!("the {module} kernel module is not available on this host (")), "{text}");
        assert!(text.contains("use `tula decap setup --method xdp`"), "{text}");
        assert_eq!(after.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["0", "0", "2", "1"]);
        assert!(!lo.iter().any(|(a, _)| IpAddr::V6(*a) == vip), "{lo:?}");
        assert!(!root.file("var/lib/tula/decap.json").exists(), "nothing was done, nothing to record");
    }
}

#[test]
fn a_vip_owned_by_another_device_is_named() {
    let topo = topology("owned");
    let root = Root::new("owned");
    let err = topo
        .backend
        .run(|| {
            tula_net::add_address("bk0", IpAddr::V4(VIP2), 32).unwrap();
            let mut opts = xdp_options(&root);
            opts.interface = Some("bk0".into());
            tula_decap::plan_setup(&opts).expect_err("VIP2 is on bk0")
        })
        .unwrap();
    assert!(matches!(&err, DecapError::VipOwnedElsewhere { vip, device, .. } if *vip == VIP2 && device == "bk0"), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("VIP 203.0.113.11 is already on bk0"), "{text}");
    assert!(text.contains("ip addr del 203.0.113.11/32 dev bk0"), "{text}");
}

#[test]
fn no_uplink_and_no_interface_asks_for_one() {
    let pid = std::process::id();
    let ns = Netns::create(&format!("tdc-nouplink-{pid}")).unwrap();
    let root = Root::new("nouplink");
    let err = ns
        .run(|| {
            tula_net::add_veth("a0", "a1", None).unwrap();
            tula_net::add_veth("b0", "b1", None).unwrap();
            for name in ["a0", "a1", "b0", "b1"] {
                tula_net::set_up(name).unwrap();
            }
            tula_decap::plan_setup(&xdp_options(&root)).expect_err("four candidates, no default route")
        })
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("pass --interface IFACE"), "{text}");
    assert!(text.contains("a0") && text.contains("b1"), "{text}");

    // An IPv6 default route names the uplink of an IPv6-only host.
    let out = ns.command("sh").args(["-ec", "ip -6 addr add 2001:db8:5::2/64 dev b1 nodad; ip -6 route add default via 2001:db8:5::1 dev b1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ns.run(tula_decap::default_uplink).unwrap().unwrap(), "b1");
}

#[test]
fn setup_removes_pins_left_by_a_namespace_deleted_without_teardown() {
    let root = Root::new("stale");
    let gone = topology("stale1");
    let gone_dir = gone
        .backend
        .run(|| {
            let mut opts = xdp_options(&root);
            opts.persist = Persist::None;
            tula_decap::setup(&opts).unwrap();
            program::pin_dir("bk0").unwrap()
        })
        .unwrap();
    assert!(gone_dir.join("link").exists());
    drop(gone); // namespaces deleted, no teardown: the pins stay, their link loses bk0
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while PinnedDecap::open(&gone_dir).unwrap().attached_ifindex().unwrap() != 0 {
        assert!(std::time::Instant::now() < deadline, "the deleted namespace's veth never went away");
        std::thread::sleep(Duration::from_millis(50));
    }

    let topo = topology("stale2");
    let root2 = Root::new("stale2");
    let _cleanup = TeardownOnDrop { ns: &topo.backend, root: &root2 };
    let plan = topo
        .backend
        .run(|| {
            let mut opts = xdp_options(&root2);
            opts.persist = Persist::None;
            let plan = tula_decap::plan_setup(&opts).unwrap();
            tula_decap::apply(&plan, root2.path()).unwrap();
            tula_decap::teardown(root2.path()).unwrap();
            plan
        })
        .unwrap();
    // This plan removes them, unless a setup of a test running at the same time
    // did first. The deleted namespace's inode number may since name another
    // test's namespace, whose own pins (attached) then sit at the same path.
    let stale_left = PinnedDecap::open(&gone_dir).is_some_and(|p| p.attached_ifindex().is_ok_and(|i| i == 0));
    assert!(!stale_left, "{:#?}", plan.changes);
}

/// The manual equivalent (what the web UI's Backend setup panel shows), run
/// by hand with `sh` in the backend's namespace. This host has no ipip module,
/// so the XDP method's steps: after the steps before the program, setup finds
/// nothing left to do but attach the program; after all of them, verify passes.
#[test]
fn the_manual_steps_run_by_hand_make_a_backend_that_verifies() {
    let topo = topology("manual");
    let root = Root::new("manual");
    let _cleanup = TeardownOnDrop { ns: &topo.backend, root: &root };
    topo.backend.run(set_stock_sysctls).unwrap();
    let mut opts = ManualOptions::new(Method::Xdp, "bk0", BACKEND, vec![VIP, VIP2]);
    opts.mss_clamp = Some(1400);
    opts.root = root.path().to_path_buf();
    let steps = tula_decap::manual_steps(&opts);
    let (program, by_hand) = steps.split_last().unwrap();
    let sh = |command: &str| {
        let out = topo.backend.command("sh").args(["-ec", command]).output().unwrap();
        assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    };
    for command in by_hand.iter().flat_map(|step| &step.commands) {
        sh(command);
    }

    // What setup would still change: only the program (pins other tests left behind are not ours).
    let mut setup = SetupOptions::new(Method::Xdp, vec![VIP, VIP2]);
    setup.interface = Some("bk0".into());
    setup.root = root.path().to_path_buf();
    setup.tula_binary = opts.tula_binary.clone();
    setup.mss_clamp = Some(tula_decap::MssClamp::To(1400));
    let left = topo.backend.run(|| tula_decap::plan_setup(&setup).unwrap()).unwrap();
    let left: Vec<&Change> = left
        .changes
        .iter()
        .filter(|c| !matches!(c, Change::RemoveStalePins { .. } | Change::MountBpffs { .. }))
        .collect();
    assert!(matches!(left.as_slice(), [Change::AttachDecap { .. }]), "the manual steps left {left:#?}");

    // The program step: bpffs, then the `tula decap setup` line through tula's own command line.
    let [mount, tula] = program.commands.as_slice() else { panic!("{program:#?}") };
    sh(mount);
    let args: Vec<&str> = tula.split_whitespace().collect();
    assert_eq!(args[..3], [opts.tula_binary.to_str().unwrap(), "decap", "setup"]);
    #[derive(clap::Parser)]
    struct Tula {
        #[command(flatten)]
        decap: tula_decap::cli::DecapArgs,
    }
    let parsed = <Tula as clap::Parser>::try_parse_from(&args[1..]).unwrap_or_else(|e| panic!("{tula}: {e}"));
    let code = topo.backend.run(|| tula_decap::cli::run(parsed.decap).unwrap()).unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);

    let listener = topo.backend.run(|| UdpSocket::bind(SocketAddrV4::new(VIP, 5354)).unwrap()).unwrap();
    send_tunnelled(&topo.peer, 2, 5354);
    listener.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 64];
    listener.recv_from(&mut buf).expect("a decapsulated datagram within 3 s");
    let checks = topo.backend.run(|| tula_decap::verify(&VerifyOptions::new(root.path())).unwrap()).unwrap();
    assert!(failing(&checks).is_empty(), "{:#?}", failing(&checks));
    for name in [
        "net.ipv4.conf.bk0.rp_filter = 0",
        "boot unit tula-decap.service installed and enabled",
        "TCP MSS of SYN and SYN-ACK from the VIPs clamped to 1400",
        "VIP 203.0.113.11 on lo",
    ] {
        assert_eq!(check(&checks, name).status, CheckStatus::Pass, "{name}: {checks:#?}");
    }
}

const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const LB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x50, 0, 0, 0, 0, 7);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 0x10);

/// [`topology`] with IPv6 too: bk0 2001:db8:1::2/64, lb0 2001:db8:1::1/64.
fn topology6(test: &str) -> Topology {
    let topo = topology(test);
    topo.backend
        .run(|| tula_net::add_address("bk0", IpAddr::V6(BACKEND6), 64))
        .unwrap()
        .unwrap();
    topo.peer
        .run(|| tula_net::add_address("lb0", IpAddr::V6(LB6), 64))
        .unwrap()
        .unwrap();
    topo
}

/// Sends each of `inner` to BACKEND6 from the peer namespace in an outer IPv6
/// header with next header `next` (41: IP6IP6, 4: IPv4 in IPv6): a raw socket
/// of that protocol makes the kernel add the outer header.
fn send_in_ipv6(peer: &Netns, next: i32, inner: &[Vec<u8>]) {
    peer.run(|| {
        // SAFETY: plain socket calls on a fresh fd, closed at the end.
        unsafe {
            let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW, next);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let dst = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: BACKEND6.octets(),
                },
                sin6_scope_id: 0,
            };
            for packet in inner {
                let sent = libc::sendto(
                    fd,
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&dst as *const libc::sockaddr_in6).cast(),
                    size_of::<libc::sockaddr_in6>() as u32,
                );
                assert_eq!(
                    sent,
                    packet.len() as isize,
                    "sendto: {}",
                    std::io::Error::last_os_error()
                );
            }
            libc::close(fd);
        }
    })
    .unwrap();
}

/// IPv6 + UDP from [CLIENT6]:40000 to [VIP6]:port, with the UDP checksum IPv6 requires.
fn client_datagram6(port: u16, data: &[u8]) -> Vec<u8> {
    let udp_len = (8 + data.len()) as u16;
    let mut udp = 40000u16.to_be_bytes().to_vec();
    udp.extend(port.to_be_bytes());
    udp.extend(udp_len.to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(data);
    let mut pseudo = CLIENT6.octets().to_vec();
    pseudo.extend(VIP6.octets());
    pseudo.extend(u32::from(udp_len).to_be_bytes());
    pseudo.extend([0, 0, 0, 17]);
    pseudo.extend(&udp);
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    udp[6..8].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend(udp_len.to_be_bytes());
    p.extend([17, 64]);
    p.extend(CLIENT6.octets());
    p.extend(VIP6.octets());
    p.extend(udp);
    p
}

fn addresses6_on(link: &str) -> Vec<(Ipv6Addr, u8)> {
    tula_net::addresses()
        .unwrap()
        .into_iter()
        .filter(|a| a.link == link)
        .filter_map(|a| match a.addr {
            IpAddr::V6(v6) => Some((v6, a.prefix)),
            _ => None,
        })
        .collect()
}

/// IPv6 VIPs and tunnel addresses: a first setup with an IPv4 VIP, a second
/// adding an IPv6 VIP (its /128 on lo, both maps updated, the boot unit
/// rewritten), a third with nothing to do; then IP6IP6 and IPv4-in-IPv6 from
/// the peer reach servers bound on the VIPs, verify passes, teardown undoes it all.
#[test]
fn xdp_setup_takes_ipv6_vips_and_decapsulates_ip6ip6_and_ipv4_in_ipv6() {
    let topo = topology6("xdp6");
    let root = Root::new("xdp6");
    let _cleanup = TeardownOnDrop {
        ns: &topo.backend,
        root: &root,
    };
    let pin_dir = topo
        .backend
        .run(|| program::pin_dir("bk0"))
        .unwrap()
        .unwrap();
    let own = |changes: &[Change]| -> Vec<Change> {
        changes
            .iter()
            .filter(|c| !matches!(c, Change::RemoveStalePins { .. }))
            .cloned()
            .collect()
    };
    let options = |vips: Vec<IpAddr>| {
        let mut opts = SetupOptions::new(Method::Xdp, vips);
        opts.root = root.path().to_path_buf();
        opts.tula_binary = PathBuf::from("/usr/local/bin/tula");
        opts
    };

    let (first, second, third, listeners) = topo
        .backend
        .run(|| {
            let first = tula_decap::plan_setup(&options(vec![VIP.into()])).unwrap();
            tula_decap::apply(&first, root.path()).unwrap();
            let second = tula_decap::plan_setup(&options(vec![VIP6.into()])).unwrap();
            tula_decap::apply(&second, root.path()).unwrap();
            let third = tula_decap::plan_setup(&options(vec![VIP6.into(), VIP.into()])).unwrap();
            // Bound after setup: the VIPs must be on lo first.
            let v6 = UdpSocket::bind(SocketAddrV6::new(VIP6, 5355, 0, 0)).unwrap();
            let v4 = UdpSocket::bind(SocketAddrV4::new(VIP, 5356)).unwrap();
            (first, second, third, (v6, v4))
        })
        .unwrap();

    // The uplink's IPv6 address is a tunnel address from the first setup on (IPv4 VIPs may come in IPv6).
    let both_local: Vec<IpAddr> = vec![BACKEND.into(), BACKEND6.into()];
    assert!(
        first.changes.contains(&Change::AttachDecap {
            interface: "bk0".into(),
            pin_dir: pin_dir.clone(),
            local: both_local.clone(),
            vips: vec![VIP.into()],
        }),
        "{:#?}",
        first.changes
    );
    let second_own = own(&second.changes);
    assert_eq!(
        second.vips,
        [IpAddr::from(VIP), IpAddr::from(VIP6)],
        "earlier VIPs are kept, IPv4 first"
    );
    assert_eq!(
        second_own[0],
        Change::AddAddress {
            link: "lo".into(),
            addr: VIP6.into(),
            prefix: 128
        }
    );
    assert_eq!(
        second_own[1],
        Change::UpdateDecapMaps {
            interface: "bk0".into(),
            pin_dir: pin_dir.clone(),
            local: both_local.clone(),
            vips: vec![VIP.into(), VIP6.into()],
        }
    );
    assert!(
        second_own[1].to_string().contains(
            "tunnel addresses 198.18.1.2, 2001:db8:1::2, VIPs 203.0.113.10, 2001:db8:cafe::10"
        ),
        "{}",
        second_own[1]
    );
    assert_eq!(
        second_own.len(),
        3,
        "the address, the maps and the boot unit: {second_own:#?}"
    );
    assert_eq!(own(&third.changes), [], "nothing left to do");
    let unit = std::fs::read_to_string(root.file("etc/systemd/system/tula-decap.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/tula decap setup --method xdp --interface bk0 --vip 203.0.113.10 --vip 2001:db8:cafe::10\n"),
        "{unit}"
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.file("var/lib/tula/decap.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["vips"],
        serde_json::json!(["203.0.113.10", "2001:db8:cafe::10"])
    );
    assert!(
        state["changes"].as_array().unwrap().contains(
            &serde_json::json!({"change": "add_address", "link": "lo", "addr": "2001:db8:cafe::10", "prefix": 128})
        ),
        "{state:#}"
    );

    let (lo, maps) = topo
        .backend
        .run(|| {
            let pinned = PinnedDecap::open(&pin_dir).expect("pinned");
            let maps = (
                pinned.local_addresses().unwrap(),
                pinned.local_addresses6().unwrap(),
                pinned.vips().unwrap(),
                pinned.vips6().unwrap(),
            );
            (addresses6_on("lo"), maps)
        })
        .unwrap();
    assert!(lo.contains(&(VIP6, 128)), "{lo:?}");
    assert_eq!(maps, (vec![BACKEND], vec![BACKEND6], vec![VIP], vec![VIP6]));

    // End to end: IP6IP6 to the IPv6 VIP, IPv4 in IPv6 to the IPv4 VIP.
    let six: Vec<Vec<u8>> = (0..3)
        .map(|i| client_datagram6(5355, format!("six {i}").as_bytes()))
        .collect();
    send_in_ipv6(&topo.peer, libc::IPPROTO_IPV6, &six);
    let four: Vec<Vec<u8>> = (0..2)
        .map(|i| client_datagram(5356, format!("four {i}").as_bytes()))
        .collect();
    send_in_ipv6(&topo.peer, libc::IPPROTO_IPIP, &four);
    let (v6, v4) = listeners;
    let mut buf = [0u8; 256];
    v6.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for i in 0..3 {
        let (n, from) = v6
            .recv_from(&mut buf)
            .expect("a decapsulated IP6IP6 datagram within 3 s");
        assert_eq!(&buf[..n], format!("six {i}").as_bytes());
        assert_eq!(
            from,
            std::net::SocketAddr::from((CLIENT6, 40000)),
            "the client's address"
        );
    }
    v4.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for i in 0..2 {
        let (n, from) = v4
            .recv_from(&mut buf)
            .expect("a decapsulated IPv4-in-IPv6 datagram within 3 s");
        assert_eq!(&buf[..n], format!("four {i}").as_bytes());
        assert_eq!(from, std::net::SocketAddr::from((CLIENT, 40000)));
    }
    drop((v6, v4));

    let checks = topo
        .backend
        .run(|| tula_decap::verify(&VerifyOptions::new(root.path())).unwrap())
        .unwrap();
    assert!(failing(&checks).is_empty(), "{:#?}", failing(&checks));
    assert!(
        check(&checks, "decapsulated packets seen")
            .detail
            .starts_with("decapsulated 5 packets"),
        "{checks:#?}"
    );
    let vip6 = check(&checks, "VIP 2001:db8:cafe::10 on lo");
    assert_eq!(
        vip6.detail,
        "2001:db8:cafe::10/128 on lo, and in the decapsulation map"
    );
    let map = check(
        &checks,
        "decapsulation map holds the tunnel addresses of bk0",
    );
    assert_eq!(map.detail, "198.18.1.2, 2001:db8:1::2");

    let (report, lo) = topo
        .backend
        .run(|| {
            (
                tula_decap::teardown(root.path()).unwrap(),
                addresses6_on("lo"),
            )
        })
        .unwrap();
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    assert!(
        report
            .undone
            .iter()
            .any(|l| l == "removed 2001:db8:cafe::10/128 from lo"),
        "{:#?}",
        report.undone
    );
    assert!(!lo.iter().any(|(a, _)| *a == VIP6), "{lo:?}");
    assert!(!pin_dir.exists());
    assert!(!root.file("var/lib/tula/decap.json").exists());
}

#[test]
fn ipv6_vips_need_an_ipv6_tunnel_address() {
    let topo = topology("nov6");
    let root = Root::new("nov6");
    let no_address = topo
        .backend
        .run(|| {
            let mut opts = SetupOptions::new(Method::Xdp, [IpAddr::from(VIP6)]);
            opts.root = root.path().to_path_buf();
            tula_decap::plan_setup(&opts).expect_err("bk0 has only link-local IPv6")
        })
        .unwrap();
    assert!(matches!(&no_address, DecapError::NoTunnelAddress6 { interface } if interface == "bk0"), "{no_address:?}");
    assert!(no_address.to_string().contains("IPv6 VIPs arrive only in IP6IP6"), "{no_address}");
}

#[test]
fn kernel_ipv6_dry_run_prints_ip6tnl0_the_vip_on_lo_and_the_files() {
    let topo = topology6("k6dry");
    let root = Root::new("k6dry");
    let (text, plan) = topo
        .backend
        .run(|| {
            set_stock_sysctls();
            let mut opts = SetupOptions::new(Method::Kernel, [IpAddr::from(VIP), IpAddr::from(VIP6)]);
            opts.root = root.path().to_path_buf();
            opts.persist = Persist::Networkd;
            let plan = tula_decap::plan_setup(&opts).unwrap();
            (tula_decap::cli::render_plan(&plan, true), plan)
        })
        .unwrap();
    let r = root.path().display();
    let expected = format!(
        "backend setup, method kernel (ipip and ip6_tunnel modules, tunl0 and ip6tnl0), uplink bk0
would make (dry run, nothing changed) 21 change(s):
  1. load kernel module ipip  [modprobe ipip]
  2. load kernel module ip6_tunnel  [modprobe ip6_tunnel]
  3. create IPIP tunnel tunl0 with local 198.18.1.2 unless loading the module made it  [ip link show tunl0 >/dev/null 2>&1 || ip tunnel add tunl0 mode ipip local 198.18.1.2]
  4. create IPv6 tunnel ip6tnl0 (mode any: IP6IP6 and IPv4 in IPv6) with local 2001:db8:1::2 unless loading the module made it  [ip link show ip6tnl0 >/dev/null 2>&1 || ip -6 tunnel add ip6tnl0 mode any local 2001:db8:1::2]
  5. set net.ipv4.conf.all.arp_ignore = 1 (was 0)  [sysctl -w net.ipv4.conf.all.arp_ignore=1]
  6. set net.ipv4.conf.all.arp_announce = 2 (was 0)  [sysctl -w net.ipv4.conf.all.arp_announce=2]
  7. set net.ipv4.conf.tunl0.rp_filter = 0 (not set yet)  [sysctl -w net.ipv4.conf.tunl0.rp_filter=0]
  8. set net.ipv4.conf.ip6tnl0.rp_filter = 0 (not set yet)  [sysctl -w net.ipv4.conf.ip6tnl0.rp_filter=0]
  9. set net.ipv4.conf.all.rp_filter = 0 (was 2)  [sysctl -w net.ipv4.conf.all.rp_filter=0]
 10. add 203.0.113.10/32 to tunl0  [ip addr add 203.0.113.10/32 dev tunl0]
 11. add 2001:db8:cafe::10/128 to lo  [ip addr add 2001:db8:cafe::10/128 dev lo nodad]
 12. bring tunl0 up  [ip link set tunl0 up]
 13. bring ip6tnl0 up  [ip link set ip6tnl0 up]
 14. write new file {r}/etc/sysctl.d/99-dsr.conf (mode 644):
"
    );
    assert!(text.starts_with(&expected), "got:\n{text}\nwanted:\n{expected}");
    let file = |name: &str| written(&plan, name).unwrap_or_else(|| panic!("no {name} in {text}")).0;
    assert!(file("etc/sysctl.d/99-dsr.conf").contains("net.ipv4.conf.ip6tnl0.rp_filter = 0\n"), "IPv4 in IPv6 comes out of ip6tnl0");
    assert_eq!(file("etc/modules-load.d/tula-ipip.conf").lines().last(), Some("ipip"));
    assert_eq!(file("etc/modules-load.d/tula-ip6-tunnel.conf").lines().last(), Some("ip6_tunnel"));
    assert_eq!(
        file("etc/systemd/network/90-tula-ip6tnl0.netdev"),
        "# Written by `tula decap setup`: IPv6 tunnel (IP6IP6 and IPv4 in IPv6) for Layer 3 DSR.
[NetDev]
Name=ip6tnl0
Kind=ip6tnl

[Tunnel]
Mode=any
Local=2001:db8:1::2
Remote=any
Independent=yes
"
    );
    assert!(file("etc/systemd/network/90-tula-ip6tnl0.network").contains("[Match]\nName=ip6tnl0\n"));
    assert_eq!(
        file("etc/systemd/network/90-tula-lo.network"),
        "# Written by `tula decap setup`: the IPv6 VIPs this backend serves, on lo.
[Match]
Name=lo

[Link]
RequiredForOnline=no

[Network]
Address=2001:db8:cafe::10/128
"
    );
    assert!(file("etc/systemd/network/90-tula-tunl0.network").ends_with("Address=203.0.113.10/32\n"), "IPv4 VIPs only");
    assert!(text.contains("note: the ip6_tunnel module is not available") || Path::new("/sys/module/ip6_tunnel").exists());

    // With netplan: one file for both tunnels and the IPv6 VIPs on lo.
    let netplan = topo
        .backend
        .run(|| {
            let mut opts = SetupOptions::new(Method::Kernel, [IpAddr::from(VIP), IpAddr::from(VIP6)]);
            opts.root = root.path().to_path_buf();
            opts.persist = Persist::Netplan;
            tula_decap::plan_setup(&opts).unwrap()
        })
        .unwrap();
    let (yaml, mode) = written(&netplan, "etc/netplan/90-tula-dsr.yaml").expect("a netplan file");
    assert_eq!(mode, 0o600);
    assert_eq!(
        yaml,
        NETPLAN_TUNL0.to_string()
            + r#"    ip6tnl0:
      mode: ip6ip6
      local: "2001:db8:1::2"
      remote: "::"
  ethernets:
    lo:
      match:
        name: lo
      addresses:
        - "2001:db8:cafe::10/128"
"#
    );
}

/// `ip -6 neigh show ADDR dev DEV` in `ns`: the entry's state and link-layer
/// address, empty if there is none.
fn neighbour6(ns: &Netns, addr: Ipv6Addr, dev: &str) -> String {
    let out = ns.command("ip").args(["-6", "neigh", "show", &addr.to_string(), "dev", dev]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Sends one UDP datagram to [VIP6]:9 from the peer, which routes the VIP
/// on-link, so it must resolve the VIP with a Neighbour Solicitation.
fn peer_sends_to_vip6(peer: &Netns) {
    peer.run(|| {
        UdpSocket::bind(SocketAddrV6::new(LB6, 0, 0, 0)).unwrap().send_to(b"who has the VIP", SocketAddrV6::new(VIP6, 9, 0, 0))
    })
    .unwrap()
    .unwrap();
}

/// The IPv6 counterpart of arp_ignore=1 and arp_announce=2 for L2 DSR is the
/// kernel's own behaviour: it answers a Neighbour Solicitation only for an
/// address of the interface it arrives on (ndisc_recv_ns looks the target up
/// strictly on that device), and sources its own solicitations only from
/// addresses of the sending interface. With the VIP on lo, a neighbour on the
/// uplink cannot resolve it, and the backend never announces it; with the VIP
/// (wrongly) on the uplink, the neighbour resolves it at once.
#[test]
fn an_ipv6_vip_on_lo_is_neither_resolved_nor_announced_on_the_link() {
    let topo = topology6("ns6");
    let root = Root::new("ns6");
    let _cleanup = TeardownOnDrop { ns: &topo.backend, root: &root };
    topo.backend
        .run(|| {
            let mut opts = SetupOptions::new(Method::Xdp, [IpAddr::from(VIP6)]);
            opts.root = root.path().to_path_buf();
            opts.persist = Persist::None;
            tula_decap::setup(&opts).unwrap();
        })
        .unwrap();
    let ip = |ns: &Netns, args: &[&str]| {
        let out = ns.command("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ip(&topo.peer, &["-6", "route", "add", &format!("{VIP6}/128"), "dev", "lb0"]);
    let bk0_mac = topo.backend.run(|| tula_net::link("bk0").unwrap().mac).unwrap();
    let mac = bk0_mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");

    // The neighbour solicits the VIP (3 probes, 1 s apart): no answer.
    peer_sends_to_vip6(&topo.peer);
    std::thread::sleep(Duration::from_millis(1500));
    let unresolved = neighbour6(&topo.peer, VIP6, "lb0");
    assert!(unresolved.contains("INCOMPLETE") || unresolved.contains("FAILED"), "{unresolved:?}");
    assert!(!unresolved.contains("lladdr"), "{unresolved:?}");

    // The backend sends from the VIP to the neighbour: its solicitation for
    // the neighbour does not come from the VIP, so the neighbour learns no
    // link-layer address for the VIP from it.
    ip(&topo.peer, &["-6", "neigh", "flush", "dev", "lb0"]);
    ip(&topo.backend, &["-6", "neigh", "flush", "dev", "bk0"]);
    let listener = topo.peer.run(|| UdpSocket::bind(SocketAddrV6::new(LB6, 5357, 0, 0)).unwrap()).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let reply_from_vip = || {
        topo.backend
            .run(|| UdpSocket::bind(SocketAddrV6::new(VIP6, 0, 0, 0)).unwrap().send_to(b"reply", SocketAddrV6::new(LB6, 5357, 0, 0)))
            .unwrap()
            .unwrap();
        let (_, from) = listener.recv_from(&mut [0u8; 16]).expect("the backend's datagram from the VIP");
        assert_eq!(from.ip(), IpAddr::V6(VIP6));
    };
    reply_from_vip();
    let announced = neighbour6(&topo.peer, VIP6, "lb0");
    assert!(!announced.contains("lladdr"), "the VIP was announced: {announced:?}");

    // Controls: with the VIP on the uplink as well, the backend's solicitation
    // comes from the VIP, the neighbour resolves it at once, and verify names it.
    topo.backend.run(|| tula_net::add_address("bk0", IpAddr::V6(VIP6), 128)).unwrap().unwrap();
    ip(&topo.backend, &["-6", "neigh", "flush", "dev", "bk0"]);
    reply_from_vip();
    let announced = neighbour6(&topo.peer, VIP6, "lb0");
    assert!(announced.contains(&format!("lladdr {mac}")), "{announced:?}");
    ip(&topo.peer, &["-6", "neigh", "flush", "dev", "lb0"]);
    peer_sends_to_vip6(&topo.peer);
    std::thread::sleep(Duration::from_millis(300));
    let resolved = neighbour6(&topo.peer, VIP6, "lb0");
    assert!(resolved.contains(&format!("lladdr {mac}")), "{resolved:?}");
    let checks = topo.backend.run(|| tula_decap::verify(&VerifyOptions::new(root.path())).unwrap()).unwrap();
    let vip = check(&checks, "VIP 2001:db8:cafe::10 on lo");
    assert_eq!(vip.status, CheckStatus::Fail);
    assert!(vip.detail.contains("is on bk0, where it answers Neighbour Solicitations"), "{vip}");
    assert_eq!(vip.fix.as_deref(), Some("ip addr del 2001:db8:cafe::10/128 dev bk0; the VIP belongs on lo only"));
}

/// verify on an IPv6 setup: each part taken away in turn fails exactly its
/// own check, with the fix; the kernel method's module and ip6tnl0 too.
#[test]
fn verify_names_each_missing_part_of_an_ipv6_setup() {
    let topo = topology6("v6verify");
    let root = Root::new("v6verify");
    let _cleanup = TeardownOnDrop { ns: &topo.backend, root: &root };
    let pin_dir = topo.backend.run(|| program::pin_dir("bk0")).unwrap().unwrap();
    let failing_now = |break_it: &(dyn Fn() + Sync), repair: &(dyn Fn() + Sync)| -> Vec<tula_decap::Check> {
        topo.backend
            .run(|| {
                break_it();
                let checks = tula_decap::verify(&VerifyOptions::new(root.path())).unwrap();
                repair();
                checks
                    .into_iter()
                    .filter(|c| c.status == CheckStatus::Fail && c.name != "decapsulated packets seen")
                    .collect()
            })
            .unwrap()
    };
    topo.backend
        .run(|| {
            let mut opts = SetupOptions::new(Method::Xdp, [IpAddr::from(VIP6)]);
            opts.root = root.path().to_path_buf();
            tula_decap::setup(&opts).unwrap();
        })
        .unwrap();
    assert_eq!(failing_now(&|| {}, &|| {}).len(), 0, "a complete setup");
    let vip6: IpAddr = VIP6.into();
    let local: [IpAddr; 2] = [BACKEND.into(), BACKEND6.into()];

    let off_lo = failing_now(
        &|| assert!(tula_net::del_address("lo", vip6, 128).unwrap()),
        &|| assert!(tula_net::add_address("lo", vip6, 128).unwrap()),
    );
    assert_eq!(off_lo.len(), 1, "{off_lo:#?}");
    assert_eq!(off_lo[0].name, "VIP 2001:db8:cafe::10 on lo");
    assert_eq!(off_lo[0].detail, "2001:db8:cafe::10 is on no device");

    let pinned = PinnedDecap::open(&pin_dir).unwrap();
    let not_in_map = failing_now(
        &|| pinned.set_addresses(&local, &[]).unwrap(),
        &|| pinned.set_addresses(&local, &[vip6]).unwrap(),
    );
    assert_eq!(not_in_map.len(), 1, "{not_in_map:#?}");
    assert_eq!(not_in_map[0].detail, "2001:db8:cafe::10 is on lo but not in the decapsulation map");

    let no_endpoint = failing_now(
        &|| pinned.set_addresses(&local[..1], &[vip6]).unwrap(),
        &|| pinned.set_addresses(&local, &[vip6]).unwrap(),
    );
    assert_eq!(no_endpoint.len(), 1, "{no_endpoint:#?}");
    assert_eq!(no_endpoint[0].name, "decapsulation map holds the tunnel addresses of bk0");
    assert!(no_endpoint[0].detail.starts_with("2001:db8:1::2 missing from the map"), "{}", no_endpoint[0]);
    assert!(no_endpoint[0].fix.as_deref().unwrap().contains("--vip 2001:db8:cafe::10"), "{}", no_endpoint[0]);

    let unit = root.file("etc/systemd/system/tula-decap.service");
    let written = std::fs::read_to_string(&unit).unwrap();
    let not_persisted = failing_now(
        &|| std::fs::write(&unit, written.replace(" --vip 2001:db8:cafe::10", "")).unwrap(),
        &|| std::fs::write(&unit, &written).unwrap(),
    );
    assert_eq!(not_persisted.len(), 1, "{not_persisted:#?}");
    assert!(not_persisted[0].detail.ends_with("does not name VIP 2001:db8:cafe::10"), "{}", not_persisted[0]);

    // The kernel method's parts: this host has no ip6_tunnel module, so no ip6tnl0.
    let kernel = topo
        .backend
        .run(|| {
            let mut opts = VerifyOptions::new(root.path());
            opts.method = Some(Method::Kernel);
            tula_decap::verify(&opts).unwrap()
        })
        .unwrap();
    if !Path::new("/sys/module/ip6_tunnel").exists() {
        let module = check(&kernel, "ip6_tunnel kernel module loaded");
        assert_eq!(module.status, CheckStatus::Fail);
        assert!(module.fix.as_deref().unwrap().starts_with("modprobe ip6_tunnel"), "{module}");
        let tunnel = check(&kernel, "tunnel ip6tnl0 present and up");
        assert_eq!((tunnel.status, tunnel.detail.as_str()), (CheckStatus::Fail, "ip6tnl0 does not exist"));
        assert_eq!(check(&kernel, "decapsulated packets seen").detail, "ip6tnl0 does not exist");
    }
    assert!(!kernel.iter().any(|c| c.name.contains("tunl0") || c.name.contains("ipip")), "IPv6 VIPs only: {kernel:#?}");
}

/// Sends a Router Advertisement from the peer's lb0 to all nodes, with the
/// prefix 2001:db8:2::/64 for stateless autoconfiguration (no default router).
fn advertise_prefix(peer: &Netns) {
    peer.run(|| {
        let index = tula_net::link("lb0").unwrap().index;
        let mut ra = vec![134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        ra.extend([3, 4, 64, 0xc0]); // prefix information: on-link, autonomous
        ra.extend(3600u32.to_be_bytes()); // valid lifetime
        ra.extend(3600u32.to_be_bytes()); // preferred lifetime
        ra.extend([0; 4]);
        ra.extend(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0).octets());
        // SAFETY: plain socket calls on a fresh fd, closed at the end; the kernel fills the ICMPv6 checksum.
        unsafe {
            let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let hops: libc::c_int = 255; // RFC 4861: an RA arrives with hop limit 255 or is ignored
            let set = libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_HOPS,
                (&hops as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            );
            assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
            let dst = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets() },
                sin6_scope_id: index,
            };
            // Fails while lb0's link-local address is still tentative; the caller retries.
            libc::sendto(fd, ra.as_ptr().cast(), ra.len(), 0, (&dst as *const libc::sockaddr_in6).cast(), size_of::<libc::sockaddr_in6>() as u32);
            libc::close(fd);
        }
    })
    .unwrap();
}

/// An uplink with privacy addresses (RFC 8981, `use_tempaddr=2`): the
/// autoconfigured address is a tunnel address, the temporary one, which the
/// kernel replaces after a while, is not.
#[test]
fn privacy_addresses_are_no_tunnel_addresses() {
    let topo = topology6("tmpaddr");
    let root = Root::new("tmpaddr");
    topo.backend.run(|| tula_net::sysctl::write("net.ipv6.conf.bk0.use_tempaddr", "2").unwrap()).unwrap();
    let in_prefix = |a: &tula_net::Address| matches!(a.addr, IpAddr::V6(v6) if v6.segments()[..4] == [0x2001, 0xdb8, 2, 0]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let autoconfigured = loop {
        advertise_prefix(&topo.peer);
        std::thread::sleep(Duration::from_millis(300));
        let found: Vec<tula_net::Address> =
            topo.backend.run(|| tula_net::addresses().unwrap()).unwrap().into_iter().filter(|a| a.link == "bk0" && in_prefix(a)).collect();
        if found.len() == 2 {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "no SLAAC and temporary address on bk0: {found:?}");
    };
    let temporary: Vec<IpAddr> = autoconfigured.iter().filter(|a| a.temporary).map(|a| a.addr).collect();
    let stable: Vec<IpAddr> = autoconfigured.iter().filter(|a| !a.temporary).map(|a| a.addr).collect();
    assert_eq!((temporary.len(), stable.len()), (1, 1), "{autoconfigured:?}");

    let plan = topo
        .backend
        .run(|| {
            let mut opts = SetupOptions::new(Method::Xdp, [IpAddr::from(VIP6)]);
            opts.root = root.path().to_path_buf();
            opts.persist = Persist::None;
            tula_decap::plan_setup(&opts).unwrap()
        })
        .unwrap();
    let local = plan
        .changes
        .iter()
        .find_map(|c| match c {
            Change::AttachDecap { local, .. } => Some(local.clone()),
            _ => None,
        })
        .expect("an attach");
    assert!(local.contains(&stable[0]) && local.contains(&IpAddr::V6(BACKEND6)), "{local:?}");
    assert!(!local.contains(&temporary[0]), "the privacy address {} is in {local:?}", temporary[0]);
}
