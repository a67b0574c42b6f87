//! The manual equivalent of `tula decap setup`: the shell commands that give
//! a fresh backend host the same setup, step by step, built from the same
//! [`Change`]s setup applies. The web UI's Backend setup panel, the docs and
//! `tula decap setup --manual` all print these steps, so none of them can
//! drift from what setup does.

use crate::persist::{self, Persist};
use crate::plan::{
    first_v4, first_v6, host_prefix, ipv4_only, ipv6_only, sysctls_for, vip_device, Method, IP6_TUNNEL_MODULE,
    IPIP_MODULE, TUNNEL, TUNNEL6,
};
use crate::program::BPFFS;
use crate::Change;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// The backend the steps are for.
#[derive(Debug, Clone)]
pub struct ManualOptions {
    pub method: Method,
    /// The uplink: where the XDP program goes and `rp_filter` is turned off.
    pub interface: String,
    /// The backend's addresses the load balancer tunnels to, IPv4 first.
    pub local: Vec<IpAddr>,
    /// IPv4 and IPv6 VIPs.
    pub vips: Vec<IpAddr>,
    /// Clamp the TCP MSS of the VIPs' SYN and SYN-ACK to this.
    pub mss_clamp: Option<u16>,
    /// Clamp the TCP MSS of the IPv6 VIPs' SYN and SYN-ACK to this.
    pub mss_clamp6: Option<u16>,
    /// Where the kernel method's tunnel is persisted. `Auto`: systemd-networkd,
    /// with netplan as the alternative step; `None`: no files.
    pub persist: Persist,
    /// Prefix of every file path written (as setup's `--root`).
    pub root: PathBuf,
    /// The `tula` executable (the XDP method's program step and boot unit).
    pub tula_binary: PathBuf,
}

impl ManualOptions {
    /// For an IPv4 backend and IPv4 VIPs.
    pub fn new(method: Method, interface: impl Into<String>, local: Ipv4Addr, vips: Vec<Ipv4Addr>) -> ManualOptions {
        let vips = vips.into_iter().map(IpAddr::V4).collect();
        ManualOptions::with_addresses(method, interface, vec![IpAddr::V4(local)], vips)
    }

    /// For tunnel addresses and VIPs of either family.
    pub fn with_addresses(
        method: Method,
        interface: impl Into<String>,
        local: Vec<IpAddr>,
        vips: Vec<IpAddr>,
    ) -> ManualOptions {
        ManualOptions {
            method,
            interface: interface.into(),
            local,
            vips,
            mss_clamp: None,
            mss_clamp6: None,
            persist: Persist::Auto,
            root: PathBuf::from("/"),
            tula_binary: PathBuf::from("/usr/local/bin/tula"),
        }
    }
}

/// One step: what it does (and why), then its commands, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub title: String,
    /// Each a shell command; a file is one command with a here-document.
    pub commands: Vec<String>,
    /// Run instead of the step before it (netplan instead of systemd-networkd).
    pub alternative: bool,
}

impl Step {
    fn new(title: impl Into<String>, changes: &[Change]) -> Step {
        Step { title: title.into(), commands: changes.iter().filter_map(Change::command).collect(), alternative: false }
    }
}

/// The steps for a fresh host, in the order setup makes the changes: the
/// sysctls before the VIPs, so the host never answers ARP for a VIP.
pub fn manual_steps(opts: &ManualOptions) -> Vec<Step> {
    let mut steps = Vec::new();
    let (has4, has6) = (opts.vips.iter().any(IpAddr::is_ipv4), opts.vips.iter().any(IpAddr::is_ipv6));
    if opts.method == Method::Kernel && has4 {
        steps.push(Step::new(
            format!(
                "Load the ipip module. Loading it creates {TUNNEL}, the kernel's catch-all IPIP device; create \
                 {TUNNEL} only where the kernel did not (with net.core.fb_tunnels_only_for_init_net set)."
            ),
            &[
                Change::LoadModule { name: IPIP_MODULE.into() },
                Change::CreateIpipTunnel { name: TUNNEL.into(), local: local4(opts) },
            ],
        ));
    }
    if opts.method == Method::Kernel && has6 {
        steps.push(Step::new(
            format!(
                "Load the ip6_tunnel module. Loading it creates {TUNNEL6}, the kernel's catch-all IPv6 tunnel device \
                 (mode any: IP6IP6 and IPv4 in IPv6); create {TUNNEL6} only where the kernel did not."
            ),
            &[
                Change::LoadModule { name: IP6_TUNNEL_MODULE.into() },
                Change::CreateIp6Tunnel { name: TUNNEL6.into(), local: local6(opts) },
            ],
        ));
    }
    let settings = sysctls_for(opts.method, &opts.interface, &opts.vips);
    if !settings.is_empty() {
        steps.push(Step::new(
        format!(
            "Never answer ARP for a VIP, and turn reverse path filtering off: decapsulated packets carry the \
             client's address as source, which does not match the route back through {}.",
            if opts.method == Method::Kernel { TUNNEL } else { opts.interface.as_str() }
        ),
        &settings
            .iter()
            .map(|(key, to)| Change::SetSysctl { key: key.clone(), from: None, to: to.clone() })
            .collect::<Vec<_>>(),
    ));
    }
    let mut addresses: Vec<Change> = opts
        .vips
        .iter()
        .map(|&addr| Change::AddAddress { link: vip_device(opts.method, addr).into(), addr, prefix: host_prefix(addr) })
        .collect();
    if opts.method == Method::Kernel && has4 {
        addresses.push(Change::SetLinkUp { link: TUNNEL.into() });
    }
    if opts.method == Method::Kernel && has6 {
        addresses.push(Change::SetLinkUp { link: TUNNEL6.into() });
    }
    steps.push(Step::new(
        match (opts.method, has4, has6) {
            (Method::Kernel, true, false) => format!("Put the VIPs on {TUNNEL} and bring it up."),
            (Method::Kernel, false, _) => format!("Put the VIPs on lo and bring {TUNNEL6} up."),
            (Method::Kernel, true, true) => {
                format!("Put the IPv4 VIPs on {TUNNEL} and the IPv6 VIPs on lo, and bring {TUNNEL} and {TUNNEL6} up.")
            }
            (Method::Xdp, ..) => "Put the VIPs on lo.".to_string(),
        },
        &addresses,
    ));
    let (vips4, vips6) = (ipv4_only(&opts.vips), ipv6_only(&opts.vips));
    let (mss4, mss6) = (opts.mss_clamp.filter(|_| has4), opts.mss_clamp6.filter(|_| has6));
    if let Some(mss) = mss4 {
        steps.push(Step::new(
            format!(
                "Clamp the TCP MSS of SYN and SYN-ACK sent from the VIPs to {mss}, so clients' segments fit the \
                 tunnel (tula's own nftables table ip {}; no other table is touched).",
                crate::mss_clamp::TABLE
            ),
            &[Change::ClampMss { vips: vips4, mss }],
        ));
    }
    if let Some(mss) = mss6 {
        steps.push(Step::new(
            format!(
                "Clamp the TCP MSS of SYN and SYN-ACK sent from the IPv6 VIPs to {mss}, so clients' segments fit \
                 IP6IP6 (tula's own nftables table ip6 {}; no other table is touched).",
                crate::mss_clamp::TABLE
            ),
            &[Change::ClampMss6 { vips: vips6, mss }],
        ));
    }
    if opts.persist != Persist::None {
        persistence_steps(opts, &settings, &mut steps);
    }
    if opts.method == Method::Xdp {
        let mut setup = format!("{} decap setup --method xdp --interface {}", opts.tula_binary.display(), opts.interface);
        setup.extend(opts.vips.iter().map(|v| format!(" --vip {v}")));
        if let Some(mss) = mss4 {
            setup.push_str(&format!(" --mss-clamp={mss}"));
        }
        if let Some(mss) = mss6 {
            setup.push_str(&format!(" --mss-clamp6={mss}"));
        }
        if opts.persist == Persist::None {
            setup.push_str(" --persist none");
        }
        if opts.root != Path::new("/") {
            setup.push_str(&format!(" --root {}", opts.root.display()));
        }
        let mut step = Step::new(
            format!(
                "Attach tula's decapsulation program (bpf/decap.c) to {} with the tunnel address{} {} and the VIPs \
                 in its maps. Only tula loads it; with everything above in place, this is the one change it makes.",
                opts.interface,
                if opts.local.len() > 1 { "es" } else { "" },
                opts.local.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            ),
            &[Change::MountBpffs { path: PathBuf::from(BPFFS) }],
        );
        step.commands.push(setup);
        steps.push(step);
    }
    steps
}

fn persistence_steps(opts: &ManualOptions, settings: &[(String, String)], steps: &mut Vec<Step>) {
    let file = |relative: &str, contents: String, mode: u32| Change::WriteFile {
        path: persist::under(&opts.root, relative),
        contents,
        mode,
        previous: None,
    };
    let enable = |link: &str, unit: &str| Change::Symlink {
        path: persist::under(&opts.root, link),
        target: Path::new("/").join(unit),
    };
    if !settings.is_empty() {
        steps.push(Step::new(
            "Keep the sysctls across reboots.",
            &[file(persist::SYSCTL_FILE, persist::sysctl_file(settings), 0o644)],
        ));
    }
    match opts.method {
        Method::Kernel => {
            let (vips4, vips6) = (ipv4_only(&opts.vips), ipv6_only(&opts.vips));
            let tunnel4 = (!vips4.is_empty()).then(|| (local4(opts), vips4.as_slice()));
            let tunnel6 = (!vips6.is_empty()).then(|| (local6(opts), vips6.as_slice()));
            let mut modules = Vec::new();
            let mut networkd_files = Vec::new();
            if let Some((local, vips4)) = tunnel4 {
                modules.push(file(persist::MODULES_FILE, persist::modules_file(), 0o644));
                networkd_files.push(file(persist::NETDEV_FILE, persist::networkd_netdev(local), 0o644));
                networkd_files.push(file(persist::NETWORK_FILE, persist::networkd_network(vips4), 0o644));
            }
            if let Some((local, vips6)) = tunnel6 {
                modules.push(file(persist::MODULES6_FILE, persist::modules6_file(), 0o644));
                networkd_files.push(file(persist::NETDEV6_FILE, persist::networkd_netdev6(local), 0o644));
                networkd_files.push(file(persist::NETWORK6_FILE, persist::networkd_network6(), 0o644));
                networkd_files.push(file(persist::LO_NETWORK_FILE, persist::networkd_lo_network(vips6), 0o644));
            }
            let devices = match (tunnel4.is_some(), tunnel6.is_some()) {
                (true, false) => TUNNEL.to_string(),
                (false, _) => TUNNEL6.to_string(),
                (true, true) => format!("{TUNNEL}, {TUNNEL6}"),
            };
            steps.push(Step::new(
                match (tunnel4.is_some(), tunnel6.is_some()) {
                    (true, false) => format!("Load ipip at boot (it creates {TUNNEL})."),
                    (false, _) => format!("Load ip6_tunnel at boot (it creates {TUNNEL6})."),
                    (true, true) => format!("Load ipip and ip6_tunnel at boot (they create {TUNNEL} and {TUNNEL6})."),
                },
                &modules,
            ));
            let networkd = Step::new(format!("Persist {devices} and its VIPs with systemd-networkd."), &networkd_files);
            // netplan refuses world-readable configuration.
            let mut netplan = Step::new(
                format!("Or, where netplan manages the network, persist {devices} and its VIPs with netplan."),
                &[file(persist::NETPLAN_FILE, persist::netplan_yaml(tunnel4, tunnel6), 0o600)],
            );
            match opts.persist {
                Persist::Netplan => {
                    netplan.title = format!("Persist {devices} and its VIPs with netplan.");
                    steps.push(netplan);
                }
                Persist::Networkd => steps.push(networkd),
                _ => {
                    netplan.alternative = true;
                    steps.push(networkd);
                    steps.push(netplan);
                }
            }
            let mss4 = opts.mss_clamp.filter(|_| !vips4.is_empty());
            let mss6 = opts.mss_clamp6.filter(|_| !vips6.is_empty());
            if mss4.is_some() || mss6.is_some() {
                let clamp4 = mss4.map(|mss| (vips4.as_slice(), mss));
                let clamp6 = mss6.map(|mss| (vips6.as_slice(), mss));
                let families = crate::plan::mss_families(mss4, mss6);
                steps.push(Step::new(
                    "Load the MSS clamp's table at boot.",
                    &[
                        file(persist::NFT_FILE, persist::nft_file(clamp4, clamp6), 0o644),
                        file(persist::MSS_UNIT_FILE, persist::mss_clamp_unit(&families), 0o644),
                        enable(persist::MSS_UNIT_WANTS_LINK, persist::MSS_UNIT_FILE),
                    ],
                ));
            }
        }
        Method::Xdp => steps.push(Step::new(
            "At boot, a unit attaches the program again (bpffs pins and addresses on lo do not survive a reboot).",
            &[
                file(
                    persist::UNIT_FILE,
                    persist::systemd_unit(
                        &opts.tula_binary,
                        &opts.interface,
                        &opts.vips,
                        opts.mss_clamp.filter(|_| opts.vips.iter().any(IpAddr::is_ipv4)),
                        opts.mss_clamp6.filter(|_| opts.vips.iter().any(IpAddr::is_ipv6)),
                    ),
                    0o644,
                ),
                enable(persist::UNIT_WANTS_LINK, persist::UNIT_FILE),
            ],
        )),
    }
}

/// The IPv4 tunnel address `tunl0` ends on (unspecified for an IPv6-only backend).
fn local4(opts: &ManualOptions) -> Ipv4Addr {
    first_v4(&opts.local).unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// The IPv6 tunnel address `ip6tnl0` ends on (unspecified for an IPv4-only backend).
fn local6(opts: &ManualOptions) -> Ipv6Addr {
    first_v6(&opts.local).unwrap_or(Ipv6Addr::UNSPECIFIED)
}

/// The steps as one shell script: each title a comment, an alternative
/// step commented out.
pub fn manual_script(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        if !out.is_empty() {
            out.push('\n');
        }
        for line in wrapped(&step.title, 100) {
            out.push_str(&format!("# {line}\n"));
        }
        for command in &step.commands {
            for line in command.lines() {
                let prefix = if step.alternative { "# " } else { "" };
                out.push_str(&format!("{prefix}{line}\n"));
            }
        }
    }
    out
}

/// `text` in lines of at most `width` characters (a longer word stays whole).
fn wrapped(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKEND: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    fn kernel() -> ManualOptions {
        ManualOptions::new(Method::Kernel, "eth0", BACKEND, vec![VIP])
    }

    #[test]
    fn the_kernel_steps_create_tunl0_only_if_loading_ipip_did_not() {
        let steps = manual_steps(&kernel());
        assert_eq!(
            steps[0].commands,
            ["modprobe ipip", "ip link show tunl0 >/dev/null 2>&1 || ip tunnel add tunl0 mode ipip local 198.18.1.2"]
        );
        let script = manual_script(&steps);
        assert!(script.contains("install -D -m 644 /dev/stdin /etc/modules-load.d/tula-ipip.conf <<'EOF'\n"), "{script}");
        assert!(script.contains("/etc/systemd/network/90-tula-tunl0.netdev"), "{script}");
        assert!(script.contains("# install -D -m 600 /dev/stdin /etc/netplan/90-tula-dsr.yaml"), "netplan is the alternative: {script}");
        assert!(!script.contains("decap setup --method"), "the kernel method needs no tula: {script}");
    }

    #[test]
    fn the_sysctls_come_before_the_vips() {
        for method in [Method::Kernel, Method::Xdp] {
            let script = manual_script(&manual_steps(&ManualOptions { method, ..kernel() }));
            let sysctl = script.find("sysctl -w net.ipv4.conf.all.arp_ignore=1").unwrap();
            let address = script.find("ip addr add 203.0.113.10/32 dev").unwrap();
            assert!(sysctl < address, "{script}");
        }
    }

    #[test]
    fn the_files_follow_root_and_the_chosen_network_manager() {
        let opts = ManualOptions {
            persist: Persist::Netplan,
            root: PathBuf::from("/mnt/image"),
            mss_clamp: Some(1400),
            ..kernel()
        };
        let script = manual_script(&manual_steps(&opts));
        assert!(script.contains("install -D -m 600 /dev/stdin /mnt/image/etc/netplan/90-tula-dsr.yaml"), "{script}");
        assert!(!script.contains("networkd"), "{script}");
        assert!(script.contains("maxseg size set 1400"), "{script}");
        assert!(script.contains(
            "ln -sf /etc/systemd/system/tula-mss-clamp.service \
             /mnt/image/etc/systemd/system/multi-user.target.wants/tula-mss-clamp.service"
        ), "{script}");
        let none = manual_script(&manual_steps(&ManualOptions { persist: Persist::None, ..kernel() }));
        assert!(!none.contains("install -D"), "{none}");
    }

    #[test]
    fn the_xdp_steps_end_with_the_program_only_tula_loads() {
        let opts = ManualOptions { method: Method::Xdp, mss_clamp: Some(1440), ..kernel() };
        let steps = manual_steps(&opts);
        let last = steps.last().unwrap();
        assert_eq!(
            last.commands,
            [
                "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf",
                "/usr/local/bin/tula decap setup --method xdp --interface eth0 --vip 203.0.113.10 --mss-clamp=1440",
            ]
        );
        let script = manual_script(&steps);
        assert!(script.contains("sysctl -w net.ipv4.conf.eth0.rp_filter=0"), "{script}");
        assert!(script.contains("ip addr add 203.0.113.10/32 dev lo"), "{script}");
        assert!(!script.contains("modprobe"), "{script}");
    }

    #[test]
    fn the_kernel_steps_for_ipv6_vips_load_ip6_tunnel_and_put_the_vips_on_lo() {
        let backend6: IpAddr = "2001:db8:1::2".parse().unwrap();
        let vip6: IpAddr = "2001:db8:cafe::10".parse().unwrap();
        let opts = ManualOptions::with_addresses(Method::Kernel, "eth0", vec![backend6], vec![vip6]);
        let steps = manual_steps(&opts);
        assert_eq!(
            steps[0].commands,
            [
                "modprobe ip6_tunnel",
                "ip link show ip6tnl0 >/dev/null 2>&1 || ip -6 tunnel add ip6tnl0 mode any local 2001:db8:1::2"
            ]
        );
        assert_eq!(steps[1].commands, ["ip addr add 2001:db8:cafe::10/128 dev lo nodad", "ip link set ip6tnl0 up"]);
        let script = manual_script(&steps);
        assert!(!script.contains("sysctl"), "IPv6 VIPs need no sysctl: {script}");
        assert!(!script.contains("ipip") && !script.contains("tunl0"), "{script}");
        for file in [
            "/etc/modules-load.d/tula-ip6-tunnel.conf",
            "/etc/systemd/network/90-tula-ip6tnl0.netdev",
            "/etc/systemd/network/90-tula-lo.network",
        ] {
            assert!(script.contains(&format!("install -D -m 644 /dev/stdin {file} <<'EOF'")), "{file}: {script}");
        }
        assert!(script.contains("Address=2001:db8:cafe::10/128\n"), "{script}");
        assert!(script.contains("# install -D -m 600 /dev/stdin /etc/netplan/90-tula-dsr.yaml"), "{script}");
    }

    /// docs/BACKEND-SETUP.md shows these scripts verbatim.
    #[test]
    fn the_docs_show_the_manual_steps_as_they_are() {
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/BACKEND-SETUP.md")).unwrap();
        let kernel6 = ManualOptions::with_addresses(
            Method::Kernel,
            "eth0",
            vec!["2001:db8:1::2".parse().unwrap()],
            vec!["2001:db8:cafe::10".parse().unwrap()],
        );
        for opts in [kernel(), ManualOptions { method: Method::Xdp, ..kernel() }, kernel6] {
            let script = manual_script(&manual_steps(&opts));
            assert!(
                docs.contains(&format!("```sh\n{script}```\n")),
                "docs/BACKEND-SETUP.md lacks the {:?} steps; paste them:\n{script}",
                opts.method
            );
        }
    }
}
