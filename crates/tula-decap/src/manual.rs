//! The manual equivalent of `tula decap setup`: the shell commands that give
//! a fresh backend host the same setup, step by step, built from the same
//! [`Change`]s setup applies. The web UI's Backend setup panel, the docs and
//! `tula decap setup --manual` all print these steps, so none of them can
//! drift from what setup does.

use crate::persist::{self, Persist};
use crate::plan::{first_v4, host_prefix, ipv4_only, sysctls, vip_device, Method, TUNNEL};
use crate::program::BPFFS;
use crate::Change;
use std::net::{IpAddr, Ipv4Addr};
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
    if opts.method == Method::Kernel {
        steps.push(Step::new(
            format!(
                "Load the ipip module. Loading it creates {TUNNEL}, the kernel's catch-all IPIP device; create \
                 {TUNNEL} only where the kernel did not (with net.core.fb_tunnels_only_for_init_net set)."
            ),
            &[
                Change::LoadModule { name: "ipip".into() },
                Change::CreateIpipTunnel { name: TUNNEL.into(), local: local4(opts) },
            ],
        ));
    }
    let settings = sysctls(opts.method, &opts.interface);
    let device = vip_device(opts.method);
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
    let mut addresses: Vec<Change> =
        opts.vips.iter().map(|&addr| Change::AddAddress { link: device.into(), addr, prefix: host_prefix(addr) }).collect();
    if opts.method == Method::Kernel {
        addresses.push(Change::SetLinkUp { link: TUNNEL.into() });
    }
    steps.push(Step::new(
        match opts.method {
            Method::Kernel => format!("Put the VIPs on {TUNNEL} and bring it up."),
            Method::Xdp => "Put the VIPs on lo.".to_string(),
        },
        &addresses,
    ));
    let vips4 = ipv4_only(&opts.vips);
    if let Some(mss) = opts.mss_clamp.filter(|_| !vips4.is_empty()) {
        steps.push(Step::new(
            format!(
                "Clamp the TCP MSS of SYN and SYN-ACK sent from the VIPs to {mss}, so clients' segments fit the \
                 tunnel (tula's own nftables table ip {}; no other table is touched).",
                crate::mss_clamp::TABLE
            ),
            &[Change::ClampMss { vips: vips4, mss }],
        ));
    }
    if opts.persist != Persist::None {
        persistence_steps(opts, &settings, &mut steps);
    }
    if opts.method == Method::Xdp {
        let mut setup = format!("{} decap setup --method xdp --interface {}", opts.tula_binary.display(), opts.interface);
        setup.extend(opts.vips.iter().map(|v| format!(" --vip {v}")));
        if let Some(mss) = opts.mss_clamp {
            setup.push_str(&format!(" --mss-clamp={mss}"));
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
    steps.push(Step::new(
        "Keep the sysctls across reboots.",
        &[file(persist::SYSCTL_FILE, persist::sysctl_file(settings), 0o644)],
    ));
    match opts.method {
        Method::Kernel => {
            steps.push(Step::new(
                format!("Load ipip at boot (it creates {TUNNEL})."),
                &[file(persist::MODULES_FILE, persist::modules_file(), 0o644)],
            ));
            let (local, vips4) = (local4(opts), ipv4_only(&opts.vips));
            let networkd = Step::new(
                format!("Persist {TUNNEL} and its VIPs with systemd-networkd."),
                &[
                    file(persist::NETDEV_FILE, persist::networkd_netdev(local), 0o644),
                    file(persist::NETWORK_FILE, persist::networkd_network(&vips4), 0o644),
                ],
            );
            // netplan refuses world-readable configuration.
            let mut netplan = Step::new(
                format!("Or, where netplan manages the network, persist {TUNNEL} and its VIPs with netplan."),
                &[file(persist::NETPLAN_FILE, persist::netplan_yaml(local, &vips4), 0o600)],
            );
            match opts.persist {
                Persist::Netplan => {
                    netplan.title = format!("Persist {TUNNEL} and its VIPs with netplan.");
                    steps.push(netplan);
                }
                Persist::Networkd => steps.push(networkd),
                _ => {
                    netplan.alternative = true;
                    steps.push(networkd);
                    steps.push(netplan);
                }
            }
            if let Some(mss) = opts.mss_clamp {
                steps.push(Step::new(
                    "Load the MSS clamp's table at boot.",
                    &[
                        file(persist::NFT_FILE, persist::nft_file(&vips4, mss), 0o644),
                        file(persist::MSS_UNIT_FILE, persist::mss_clamp_unit(), 0o644),
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
                    persist::systemd_unit(&opts.tula_binary, &opts.interface, &opts.vips, opts.mss_clamp),
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

    /// docs/BACKEND-SETUP.md shows these scripts verbatim.
    #[test]
    fn the_docs_show_the_manual_steps_as_they_are() {
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/BACKEND-SETUP.md")).unwrap();
        for opts in [kernel(), ManualOptions { method: Method::Xdp, ..kernel() }] {
            let script = manual_script(&manual_steps(&opts));
            assert!(
                docs.contains(&format!("```sh\n{script}```\n")),
                "docs/BACKEND-SETUP.md lacks the {:?} steps; paste them:\n{script}",
                opts.method
            );
        }
    }
}
