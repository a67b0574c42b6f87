//! `tula decap setup --mss-clamp`: tula's own nftables table, shown exactly in
//! the plan, clamping real SYN-ACKs from a VIP, checked by verify, kept for
//! reboots and deleted by teardown -- with an operator's table left alone.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use tula_decap::mss_clamp;
use tula_decap::{Change, CheckStatus, Method, MssClamp, Persist, SetupOptions, VerifyOptions};
use tula_net::Netns;

const BACKEND: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const LB: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
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
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A backend namespace with uplink bk0 (198.18.1.2/24, MTU 1500) to a peer
/// namespace; both deleted on drop (the nftables tables go with them).
fn topology(test: &str) -> (Netns, Netns) {
    let pid = std::process::id();
    let backend = Netns::create(&format!("tdm-{test}-bk-{pid}")).unwrap();
    let peer = Netns::create(&format!("tdm-{test}-lb-{pid}")).unwrap();
    backend
        .run(|| {
            tula_net::add_veth("bk0", "lb0", Some(&peer))?;
            tula_net::add_address("bk0", IpAddr::V4(BACKEND), 24)?;
            tula_net::set_up("bk0")?;
            tula_net::set_up("lo")?;
            tula_net::add_route(Ipv4Addr::UNSPECIFIED, 0, Some(LB), Some("bk0"))
        })
        .unwrap()
        .unwrap();
    (backend, peer)
}

/// Runs `nft` with `args` in the calling thread's namespace; its stdout.
fn nft(args: &[&str]) -> String {
    let out = std::process::Command::new("nft").args(args).output().expect("running nft");
    assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The MSS a TCP connection to `to` learned from the other side's SYN-ACK
/// (TCP_MAXSEG: the peer's MSS, less 12 bytes of timestamp option).
fn learned_mss(to: impl Into<SocketAddr>) -> u32 {
    let to = to.into();
    let listener = TcpListener::bind(to).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    });
    let stream = TcpStream::connect(to).unwrap();
    let mut mss: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt on a connected socket into a local int of the right size.
    let rc = unsafe {
        libc::getsockopt(stream.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_MAXSEG, (&mut mss as *mut libc::c_int).cast(), &mut len)
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    drop(stream);
    server.join().unwrap();
    mss as u32
}

/// The contents and mode of the file at a path ending in `name` that `plan` writes.
fn written(plan: &tula_decap::Plan, name: &str) -> Option<(String, u32)> {
    plan.changes.iter().find_map(|c| match c {
        Change::WriteFile { path, contents, mode, .. } if path.ends_with(name) => Some((contents.clone(), *mode)),
        _ => None,
    })
}

fn check<'a>(checks: &'a [tula_decap::Check], prefix: &str) -> &'a tula_decap::Check {
    checks.iter().find(|c| c.name.starts_with(prefix)).unwrap_or_else(|| panic!("no check {prefix:?} in {checks:#?}"))
}

#[test]
fn mss_clamp_is_a_table_of_its_own_that_verify_checks_and_teardown_deletes() {
    let (backend, _peer) = topology("clamp");
    let root = Root::new("clamp");
    let mut opts = SetupOptions::new(Method::Xdp, vec![VIP, VIP2]);
    opts.root = root.path().to_path_buf();
    opts.tula_binary = PathBuf::from("/usr/local/bin/tula");
    opts.mss_clamp = Some(MssClamp::Auto);
    let clamp_name = "TCP MSS of SYN and SYN-ACK from the VIPs clamped to 1440";

    backend
        .run(|| {
            // The operator's own table, which tula must never touch.
            nft(&["add", "table", "ip", "operator"]);
            nft(&["add", "chain", "ip", "operator", "out", "{ type filter hook output priority 0; policy accept; }"]);
            nft(&["add", "rule", "ip", "operator", "out", "tcp", "dport", "22", "counter"]);
            let operator_before = nft(&["list", "table", "ip", "operator"]);

            // Before setup: the VIP's SYN-ACKs offer what lo allows.
            let unclamped = learned_mss(SocketAddrV4::new(BACKEND, 8080));
            assert!(unclamped > 1440, "{unclamped}");

            let plan = tula_decap::plan_setup(&opts).unwrap();
            assert_eq!(plan.mss_clamp, Some(1440), "bk0's 1500 - 20 - 40");
            let clamp = Change::ClampMss { vips: vec![VIP, VIP2], mss: 1440 };
            assert!(plan.changes.contains(&clamp), "{:#?}", plan.changes);
            let shown = tula_decap::cli::render_plan(&plan, true);
            assert!(shown.contains("TCP MSS of SYN and SYN-ACK from the VIPs clamped to 1440"), "{shown}");
            for line in mss_clamp::ruleset(&[VIP, VIP2], 1440).lines() {
                assert!(shown.contains(&format!("    | {line}\n")), "dry run lacks {line:?}:\n{shown}");
            }

            tula_decap::apply(&plan, root.path()).unwrap();
            // The kernel holds exactly what the plan showed.
            assert_eq!(nft(&["list", "table", "ip", mss_clamp::TABLE]), mss_clamp::ruleset(&[VIP, VIP2], 1440));
            let unit = std::fs::read_to_string(root.path().join("etc/systemd/system/tula-decap.service")).unwrap();
            assert!(unit.contains("--vip 203.0.113.11 --mss-clamp=1440\n"), "{unit}");
            // SYN-ACKs from a VIP offer 1440; from the backend's own address nothing changed.
            assert_eq!(learned_mss(SocketAddrV4::new(VIP, 8080)), 1440 - 12);
            assert_eq!(learned_mss(SocketAddrV4::new(BACKEND, 8081)), unclamped);

            // Idempotent: a second run (without --mss-clamp: the recorded clamp stays) changes nothing.
            let mut again = opts.clone();
            again.mss_clamp = None;
            let second = tula_decap::plan_setup(&again).unwrap();
            assert_eq!(second.mss_clamp, Some(1440));
            assert!(!second.changes.iter().any(|c| matches!(c, Change::ClampMss { .. })), "{:#?}", second.changes);

            let verify = VerifyOptions::new(root.path());
            let checks = tula_decap::verify(&verify).unwrap();
            let clamp_check = check(&checks, clamp_name);
            assert_eq!(clamp_check.status, CheckStatus::Pass, "{clamp_check}");

            // Someone deletes the table: verify says so, setup puts it back.
            nft(&["delete", "table", "ip", mss_clamp::TABLE]);
            let checks = tula_decap::verify(&verify).unwrap();
            let clamp_check = check(&checks, clamp_name);
            assert_eq!(clamp_check.status, CheckStatus::Fail);
            assert!(clamp_check.detail.contains("does not exist"), "{clamp_check}");
            assert!(clamp_check.fix.as_deref().unwrap().contains("--mss-clamp=1440"), "{clamp_check}");
            let repair = tula_decap::plan_setup(&again).unwrap();
            assert!(repair.changes.contains(&clamp));
            tula_decap::apply(&repair, root.path()).unwrap();
            // Another MSS replaces the table, in one transaction.
            let mut lower = opts.clone();
            lower.mss_clamp = Some(MssClamp::To(1300));
            tula_decap::apply(&tula_decap::plan_setup(&lower).unwrap(), root.path()).unwrap();
            assert_eq!(nft(&["list", "table", "ip", mss_clamp::TABLE]), mss_clamp::ruleset(&[VIP, VIP2], 1300));
            assert_eq!(learned_mss(SocketAddrV4::new(VIP, 8082)), 1300 - 12);
            let checks = tula_decap::verify(&verify).unwrap();
            assert_eq!(check(&checks, "TCP MSS").status, CheckStatus::Pass, "{:#?}", check(&checks, "TCP MSS"));

            let report = tula_decap::teardown(root.path()).unwrap();
            assert!(report.failed.is_empty(), "{:?}", report.failed);
            assert!(report.undone.iter().any(|l| l == "deleted nftables table ip tula_dsr"), "{:?}", report.undone);
            assert!(mss_clamp::read().unwrap().is_none(), "the table is gone");
            assert_eq!(nft(&["list", "table", "ip", "operator"]), operator_before, "the operator's table is untouched");
            // Teardown took the VIP off lo too; back on, its SYN-ACKs are not clamped.
            tula_net::add_address("lo", IpAddr::V4(VIP), 32).unwrap();
            assert_eq!(learned_mss(SocketAddrV4::new(VIP, 8083)), unclamped, "no clamp after teardown");
        })
        .unwrap();
}

#[test]
fn mss_clamp_is_refused_below_536_and_persisted_for_the_kernel_method() {
    let (backend, _peer) = topology("clampk");
    let root = Root::new("clampk");
    let mut opts = SetupOptions::new(Method::Kernel, vec![VIP]);
    opts.root = root.path().to_path_buf();
    opts.persist = Persist::Networkd;
    backend
        .run(|| {
            opts.mss_clamp = Some(MssClamp::To(500));
            let error = tula_decap::plan_setup(&opts).unwrap_err();
            assert!(error.to_string().contains("--mss-clamp=500 is below 536"), "{error}");

            opts.mss_clamp = Some(MssClamp::To(1400));
            let plan = tula_decap::plan_setup(&opts).unwrap();
            let file = |name: &str| written(&plan, name).map(|(contents, _)| contents);
            let nft_file = file("etc/tula/dsr-mss-clamp.nft").expect("the table as a file");
            assert!(nft_file.ends_with(&mss_clamp::ruleset(&[VIP], 1400)), "{nft_file}");
            assert!(nft_file.contains("table ip tula_dsr\ndelete table ip tula_dsr\n"), "{nft_file}");
            let unit = file("etc/systemd/system/tula-mss-clamp.service").expect("a unit loading it");
            assert!(unit.contains("ExecStart=/usr/sbin/nft -f /etc/tula/dsr-mss-clamp.nft\n"), "{unit}");
            assert!(unit.contains("ExecStop=/usr/sbin/nft delete table ip tula_dsr\n"), "{unit}");
            let link = root.path().join("etc/systemd/system/multi-user.target.wants/tula-mss-clamp.service");
            assert!(plan.changes.iter().any(|c| matches!(c, Change::Symlink { path, .. } if *path == link)));
            // The load runs before the files are written, as with every other change.
            let clamp = plan.changes.iter().position(|c| matches!(c, Change::ClampMss { .. })).unwrap();
            let first_file = plan.changes.iter().position(|c| matches!(c, Change::WriteFile { .. })).unwrap();
            assert!(clamp < first_file);
        })
        .unwrap();
}

const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 0x10);

/// IPv6 VIPs get `table ip6 tula_dsr` at 1500 - 40 - 40 - 20 = 1400; with an
/// IPv6 address on the uplink, IPv4 VIPs may come in IPv6, so they get
/// 1500 - 40 - 20 - 20 = 1420. Both measured on real SYN-ACKs.
#[test]
fn ipv6_vips_are_clamped_to_1400_and_ipv4_vips_to_1420_when_they_may_come_in_ipv6() {
    let (backend, _peer) = topology("clamp6");
    backend.run(|| tula_net::add_address("bk0", IpAddr::V6(BACKEND6), 64)).unwrap().unwrap();
    let root = Root::new("clamp6");
    let mut opts = SetupOptions::new(Method::Xdp, [IpAddr::from(VIP), IpAddr::from(VIP6)]);
    opts.root = root.path().to_path_buf();
    opts.tula_binary = PathBuf::from("/usr/local/bin/tula");
    opts.mss_clamp = Some(MssClamp::Auto);
    let clamp6_name = "TCP MSS of SYN and SYN-ACK from the IPv6 VIPs clamped to 1400";

    backend
        .run(|| {
            let unclamped = learned_mss(SocketAddrV6::new(BACKEND6, 8090, 0, 0));
            assert!(unclamped > 1400, "{unclamped}");

            let plan = tula_decap::plan_setup(&opts).unwrap();
            assert_eq!((plan.mss_clamp, plan.mss_clamp6), (Some(1420), Some(1400)));
            assert!(plan.changes.contains(&Change::ClampMss { vips: vec![VIP], mss: 1420 }), "{:#?}", plan.changes);
            let clamp6 = Change::ClampMss6 { vips: vec![VIP6], mss: 1400 };
            assert!(plan.changes.contains(&clamp6), "{:#?}", plan.changes);
            let shown = tula_decap::cli::render_plan(&plan, true);
            assert!(shown.contains("TCP MSS of SYN and SYN-ACK from the IPv6 VIPs clamped to 1400\n"), "{shown}");
            assert!(shown.contains("where the load balancer sends them in IPIP only, --mss-clamp=1440 fits"), "{shown}");
            for line in mss_clamp::ruleset6(&[VIP6], 1400).lines() {
                assert!(shown.contains(&format!("    | {line}\n")), "dry run lacks {line:?}:\n{shown}");
            }

            tula_decap::apply(&plan, root.path()).unwrap();
            assert_eq!(nft(&["list", "table", "ip6", mss_clamp::TABLE]), mss_clamp::ruleset6(&[VIP6], 1400));
            assert_eq!(nft(&["list", "table", "ip", mss_clamp::TABLE]), mss_clamp::ruleset(&[VIP], 1420));
            let unit = std::fs::read_to_string(root.path().join("etc/systemd/system/tula-decap.service")).unwrap();
            assert!(unit.contains("--vip 2001:db8:cafe::10 --mss-clamp=1420 --mss-clamp6=1400\n"), "{unit}");
            // What the unit runs at boot parses back to the same setup.
            #[derive(clap::Parser)]
            struct Tula {
                #[command(flatten)]
                decap: tula_decap::cli::DecapArgs,
            }
            let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/tula ")).unwrap();
            // `decap` stands where clap expects the program name.
            let parsed = <Tula as clap::Parser>::try_parse_from(exec.split_whitespace()).unwrap_or_else(|e| panic!("{exec}: {e}"));
            let tula_decap::cli::DecapCommand::Setup(boot) = parsed.decap.command else { panic!("{exec}") };
            assert_eq!(boot.vips, [IpAddr::from(VIP), IpAddr::from(VIP6)]);
            assert_eq!((boot.mss_clamp, boot.mss_clamp6), (Some(Some(1420)), Some(Some(1400))));
            assert_eq!(learned_mss(SocketAddrV6::new(VIP6, 8090, 0, 0)), 1400 - 12);
            assert_eq!(learned_mss(SocketAddrV4::new(VIP, 8091)), 1420 - 12);
            assert_eq!(learned_mss(SocketAddrV6::new(BACKEND6, 8092, 0, 0)), unclamped, "only the VIPs");

            // Idempotent: a second run without the flag keeps the recorded clamps and changes nothing.
            let mut again = opts.clone();
            again.mss_clamp = None;
            let second = tula_decap::plan_setup(&again).unwrap();
            assert_eq!((second.mss_clamp, second.mss_clamp6), (Some(1420), Some(1400)));
            assert!(!second.changes.iter().any(|c| matches!(c, Change::ClampMss { .. } | Change::ClampMss6 { .. })));

            let verify = VerifyOptions::new(root.path());
            let checks = tula_decap::verify(&verify).unwrap();
            assert_eq!(check(&checks, clamp6_name).status, CheckStatus::Pass, "{checks:#?}");
            assert_eq!(check(&checks, "TCP MSS of SYN and SYN-ACK from the VIPs clamped to 1420").status, CheckStatus::Pass);

            // The IPv6 table deleted: verify names it, setup puts it back.
            nft(&["delete", "table", "ip6", mss_clamp::TABLE]);
            let checks = tula_decap::verify(&verify).unwrap();
            let failed = check(&checks, clamp6_name);
            assert_eq!(failed.status, CheckStatus::Fail);
            assert!(failed.detail.contains("nftables table ip6 tula_dsr does not exist"), "{failed}");
            assert!(failed.fix.as_deref().unwrap().contains("--mss-clamp6=1400"), "{failed}");
            assert_eq!(check(&checks, "TCP MSS of SYN and SYN-ACK from the VIPs").status, CheckStatus::Pass);
            let repair = tula_decap::plan_setup(&again).unwrap();
            assert!(repair.changes.contains(&clamp6));
            tula_decap::apply(&repair, root.path()).unwrap();

            let report = tula_decap::teardown(root.path()).unwrap();
            assert!(report.failed.is_empty(), "{:?}", report.failed);
            assert!(report.undone.iter().any(|l| l == "deleted nftables table ip6 tula_dsr"), "{:?}", report.undone);
            assert!(mss_clamp::read6().unwrap().is_none() && mss_clamp::read().unwrap().is_none());
        })
        .unwrap();
}

#[test]
fn mss_clamp6_is_refused_below_1220_and_persisted_for_the_kernel_method() {
    let (backend, _peer) = topology("clampk6");
    backend.run(|| tula_net::add_address("bk0", IpAddr::V6(BACKEND6), 64)).unwrap().unwrap();
    let root = Root::new("clampk6");
    let mut opts = SetupOptions::new(Method::Kernel, [IpAddr::from(VIP), IpAddr::from(VIP6)]);
    opts.root = root.path().to_path_buf();
    opts.persist = Persist::Networkd;
    backend
        .run(|| {
            opts.mss_clamp6 = Some(MssClamp::To(1200));
            let error = tula_decap::plan_setup(&opts).unwrap_err();
            assert!(error.to_string().contains("--mss-clamp6=1200 is below 1220"), "{error}");

            opts.mss_clamp6 = Some(MssClamp::To(1380));
            let plan = tula_decap::plan_setup(&opts).unwrap();
            assert_eq!((plan.mss_clamp, plan.mss_clamp6), (Some(1420), Some(1380)), "the IPv4 MSS is automatic");
            let file = |name: &str| written(&plan, name).map(|(contents, _)| contents);
            let nft_file = file("etc/tula/dsr-mss-clamp.nft").expect("the tables as a file");
            assert!(nft_file.contains(&mss_clamp::script(&[VIP], 1420)), "{nft_file}");
            assert!(nft_file.ends_with(&mss_clamp::script6(&[VIP6], 1380)), "{nft_file}");
            let unit = file("etc/systemd/system/tula-mss-clamp.service").expect("a unit loading it");
            assert!(unit.contains("(nftables tables ip and ip6 tula_dsr)"), "{unit}");
            assert!(
                unit.contains("ExecStop=/usr/sbin/nft delete table ip tula_dsr\nExecStop=/usr/sbin/nft delete table ip6 tula_dsr\n"),
                "{unit}"
            );
        })
        .unwrap();
}
