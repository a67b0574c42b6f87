//! `tula decap verify`: the product description's verification list as
//! checks, each PASS or FAIL with the fix. It reads the host only.

use crate::mss_clamp;
use crate::persist::{self, Persist};
use crate::plan::{self, Method, IP6_TUNNEL_MODULE, IPIP_MODULE, TUNNEL, TUNNEL6};
use crate::program::{self, PinnedDecap};
use crate::state::State;
use crate::DecapError;
use serde::Serialize;
use std::fmt::Display;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Same meaning as for setup.
    pub root: PathBuf,
    /// Default: the VIPs setup recorded.
    pub vips: Vec<IpAddr>,
    /// Default: the method setup recorded, else `kernel` if tunl0 exists, else `xdp`.
    pub method: Option<Method>,
    /// Default: the interface setup recorded, else the default uplink.
    pub interface: Option<String>,
}

impl VerifyOptions {
    pub fn new(root: impl Into<PathBuf>) -> VerifyOptions {
        VerifyOptions { root: root.into(), vips: Vec::new(), method: None, interface: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Not applicable (setup ran with `--persist none`).
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
    /// How to make a failing check pass.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check { name: name.into(), status: CheckStatus::Pass, detail: detail.into(), fix: None }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name: name.into(), status: CheckStatus::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn skip(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check { name: name.into(), status: CheckStatus::Skip, detail: detail.into(), fix: None }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            CheckStatus::Pass => "PASS",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "SKIP",
        };
        write!(f, "{status}  {}: {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n      fix: {fix}")?;
        }
        Ok(())
    }
}

/// Runs every check for the backend in this thread's namespace.
pub fn verify(opts: &VerifyOptions) -> Result<Vec<Check>, DecapError> {
    let state = State::load(&opts.root)?.unwrap_or_default();
    let vips = if opts.vips.is_empty() { state.vips.clone() } else { opts.vips.clone() };
    if vips.is_empty() {
        return Err(DecapError::NoVips);
    }
    let method = opts
        .method
        .or(state.method)
        .unwrap_or(if tula_net::link(TUNNEL).is_ok() || tula_net::link(TUNNEL6).is_ok() { Method::Kernel } else { Method::Xdp });
    let interface = match opts.interface.clone().or(state.interface.clone()) {
        Some(name) => name,
        None => plan::default_uplink()?,
    };
    let persist = state.persist.unwrap_or_else(|| Persist::Auto.resolve(&opts.root));
    let setup_hint = format!(
        "tula decap setup --method {} --interface {interface}{}",
        match method {
            Method::Kernel => "kernel",
            Method::Xdp => "xdp",
        },
        vips.iter().map(|v| format!(" --vip {v}")).collect::<String>()
    ) + &state.mss_clamp.map(|mss| format!(" --mss-clamp={mss}")).unwrap_or_default()
        + &state.mss_clamp6.map(|mss| format!(" --mss-clamp6={mss}")).unwrap_or_default();
    let addresses = tula_net::addresses()?;
    let local = plan::tunnel_addresses(&addresses, &interface, &vips);

    let mut checks = Vec::new();
    let tunnels = kernel_tunnels(&vips);
    let pinned = match method {
        Method::Kernel => {
            for (module, tunnel) in &tunnels {
                checks.push(check_module(module));
                checks.push(check_tunnel(tunnel, &setup_hint));
            }
            None
        }
        Method::Xdp => {
            let (check, pinned) = check_decap_program(&interface, &setup_hint)?;
            checks.push(check);
            if let Some(pinned) = &pinned {
                checks.push(check_tunnel_addresses(pinned, &interface, &local, &setup_hint)?);
            }
            pinned
        }
    };
    for vip in &vips {
        checks.push(check_vip(*vip, method, &addresses, pinned.as_ref(), &setup_hint)?);
    }
    let sysctl_file = persist::under(&opts.root, persist::SYSCTL_FILE);
    let persisted = std::fs::read_to_string(&sysctl_file).ok();
    for (key, want) in plan::sysctls_for(method, &interface, &vips) {
        checks.push(check_sysctl(&key, &want, persist, &sysctl_file, persisted.as_deref()));
    }
    checks.push(check_boot_persistence(method, persist, &opts.root, &vips, &setup_hint));
    let vips4 = plan::ipv4_only(&vips);
    let vips4: Vec<IpAddr> = vips4.into_iter().map(IpAddr::V4).collect();
    let vips6: Vec<IpAddr> = vips.iter().copied().filter(IpAddr::is_ipv6).collect();
    let clamps = [(mss_clamp::Family::Ip, state.mss_clamp, vips4), (mss_clamp::Family::Ip6, state.mss_clamp6, vips6)];
    for (family, mss, vips) in clamps {
        if let Some(mss) = mss.filter(|_| !vips.is_empty()) {
            checks.push(check_mss_clamp(family, mss, &vips, method, persist, &opts.root, &setup_hint)?);
        }
    }
    checks.push(check_traffic(method, &tunnels, pinned.as_ref(), &local)?);
    Ok(checks)
}

/// The kernel method's (module, tunnel device) pairs for these VIPs.
fn kernel_tunnels(vips: &[IpAddr]) -> Vec<(&'static str, &'static str)> {
    let mut tunnels = Vec::new();
    if vips.iter().any(IpAddr::is_ipv4) {
        tunnels.push((IPIP_MODULE, TUNNEL));
    }
    if vips.iter().any(IpAddr::is_ipv6) {
        tunnels.push((IP6_TUNNEL_MODULE, TUNNEL6));
    }
    tunnels
}

fn check_module(module: &str) -> Check {
    let name = format!("{module} kernel module loaded");
    let path = Path::new("/sys/module").join(module);
    if path.exists() {
        Check::pass(name, format!("{} exists", path.display()))
    } else {
        Check::fail(
            name,
            format!("{} is missing", path.display()),
            format!("modprobe {module} (if the module does not exist on this host, use `tula decap setup --method xdp`)"),
        )
    }
}

fn check_tunnel(tunnel: &str, setup_hint: &str) -> Check {
    let name = format!("tunnel {tunnel} present and up");
    match tula_net::link(tunnel) {
        Ok(link) if link.up => Check::pass(name, format!("{tunnel} is up (index {})", link.index)),
        Ok(_) => Check::fail(name, format!("{tunnel} is down"), format!("ip link set {tunnel} up, or {setup_hint}")),
        Err(_) => Check::fail(name, format!("{tunnel} does not exist"), setup_hint.to_string()),
    }
}

fn check_decap_program(interface: &str, setup_hint: &str) -> Result<(Check, Option<PinnedDecap>), DecapError> {
    let name = format!("XDP decapsulation attached to {interface}");
    let Ok(link) = tula_net::link(interface) else {
        return Ok((Check::fail(name, format!("interface {interface} does not exist"), "pass the uplink with --interface"), None));
    };
    let dir = program::pin_dir(interface)?;
    let Some(pinned) = PinnedDecap::open(&dir) else {
        if let Some(netns) = tula_net::under_ip_netns_exec() {
            let fix = format!("run verify with `nsenter --net=/run/netns/{netns}` instead of `ip netns exec`");
            let detail = format!("cannot see {}: `ip netns exec` hides the host's /sys/fs/bpf", dir.display());
            return Ok((Check::fail(name, detail, fix), None));
        }
        return Ok((Check::fail(name, format!("no decapsulation program pinned at {}", dir.display()), setup_hint), None));
    };
    let ifindex = pinned.attached_ifindex()?;
    if ifindex != link.index {
        let detail = format!(
            "the link pinned at {} is attached to interface index {ifindex}, not {interface} (index {})",
            dir.display(),
            link.index
        );
        return Ok((Check::fail(name, detail, setup_hint), None));
    }
    let detail = format!("program id {}, link pinned at {}", pinned.program_id()?, dir.display());
    Ok((Check::pass(name, detail), Some(pinned)))
}

fn check_tunnel_addresses(
    pinned: &PinnedDecap,
    interface: &str,
    local: &[IpAddr],
    setup_hint: &str,
) -> Result<Check, DecapError> {
    let name = format!("decapsulation map holds the tunnel addresses of {interface}");
    let in_map = pinned.all_local_addresses()?;
    let missing: Vec<String> = local.iter().filter(|a| !in_map.contains(a)).map(|a| a.to_string()).collect();
    Ok(if local.is_empty() {
        Check::fail(name, format!("{interface} has no IPv4 or global IPv6 address"), "give the uplink the address the load balancer sends to")
    } else if missing.is_empty() {
        Check::pass(name, list(local))
    } else {
        Check::fail(name, format!("{} missing from the map (it has {})", missing.join(", "), list(&in_map)), setup_hint)
    })
}

fn check_vip(
    vip: IpAddr,
    method: Method,
    addresses: &[tula_net::Address],
    pinned: Option<&PinnedDecap>,
    setup_hint: &str,
) -> Result<Check, DecapError> {
    let device = plan::vip_device(method, vip);
    let name = format!("VIP {vip} on {device}");
    let prefix = plan::host_prefix(vip);
    let on: Vec<&str> = addresses.iter().filter(|a| a.addr == vip).map(|a| a.link.as_str()).collect();
    if let Some(other) = on.iter().find(|d| **d != device) {
        let fix = format!("ip addr del {vip}/{prefix} dev {other}; the VIP belongs on {device} only");
        let answers = if vip.is_ipv4() { "ARP" } else { "Neighbour Solicitations" };
        return Ok(Check::fail(name, format!("{vip} is on {other}, where it answers {answers} and steals traffic"), fix));
    }
    if on.is_empty() {
        return Ok(Check::fail(name, format!("{vip} is on no device"), setup_hint));
    }
    if let Some(pinned) = pinned {
        if !pinned.all_vips()?.contains(&vip) {
            return Ok(Check::fail(name, format!("{vip} is on {device} but not in the decapsulation map"), setup_hint));
        }
        return Ok(Check::pass(name, format!("{vip}/{prefix} on {device}, and in the decapsulation map")));
    }
    Ok(Check::pass(name, format!("{vip}/{prefix} on {device}")))
}

fn check_sysctl(key: &str, want: &str, persist: Persist, file: &Path, persisted: Option<&str>) -> Check {
    let name = format!("{key} = {want}");
    let live = tula_net::sysctl::read(key).ok();
    let mut problems = Vec::new();
    match live.as_deref() {
        Some(v) if v == want => {}
        Some(v) => problems.push(format!("it is {v}")),
        None => problems.push("the key does not exist (is its interface there?)".to_string()),
    }
    if persist != Persist::None {
        match persisted.map(|text| persist::sysctl_file_value(text, key)) {
            None => problems.push(format!("{} does not exist", file.display())),
            Some(None) => problems.push(format!("{} does not set it", file.display())),
            Some(Some(v)) if v != want => problems.push(format!("{} sets it to {v}", file.display())),
            Some(Some(_)) => {}
        }
    }
    if problems.is_empty() {
        let kept = if persist == Persist::None { "not persisted (--persist none)".to_string() } else { format!("persisted in {}", file.display()) };
        return Check::pass(name, format!("set, {kept}"));
    }
    let fix = format!("sysctl -w {key}={want}, and keep `{key} = {want}` in {}", file.display());
    Check::fail(name, problems.join("; "), fix)
}

fn check_boot_persistence(method: Method, persist: Persist, root: &Path, vips: &[IpAddr], setup_hint: &str) -> Check {
    let (has4, has6) = (vips.iter().any(IpAddr::is_ipv4), vips.iter().any(IpAddr::is_ipv6));
    // (file, the VIPs it must name)
    let mut files: Vec<(&str, Vec<IpAddr>)> = Vec::new();
    let v4 = || vips.iter().copied().filter(IpAddr::is_ipv4).collect::<Vec<_>>();
    let v6 = || vips.iter().copied().filter(IpAddr::is_ipv6).collect::<Vec<_>>();
    match (method, persist) {
        (_, Persist::None) => return Check::skip("setup persisted for reboots", "setup ran with --persist none"),
        (Method::Xdp, _) => files.extend([(persist::UNIT_FILE, vips.to_vec()), (persist::UNIT_WANTS_LINK, Vec::new())]),
        (Method::Kernel, persist) => {
            if has4 {
                files.push((persist::MODULES_FILE, Vec::new()));
            }
            if has6 {
                files.push((persist::MODULES6_FILE, Vec::new()));
            }
            if persist == Persist::Netplan {
                files.push((persist::NETPLAN_FILE, vips.to_vec()));
            } else {
                if has4 {
                    files.extend([(persist::NETDEV_FILE, Vec::new()), (persist::NETWORK_FILE, v4())]);
                }
                if has6 {
                    files.extend([(persist::NETDEV6_FILE, Vec::new()), (persist::NETWORK6_FILE, Vec::new())]);
                    files.push((persist::LO_NETWORK_FILE, v6()));
                }
            }
        }
    }
    let name = match (method, has4, has6) {
        (Method::Xdp, ..) => "boot unit tula-decap.service installed and enabled",
        (Method::Kernel, true, false) => "ipip module, tunnel and VIPs persisted for reboots",
        (Method::Kernel, false, _) => "ip6_tunnel module, tunnel and VIPs persisted for reboots",
        (Method::Kernel, true, true) => "ipip and ip6_tunnel modules, tunnels and VIPs persisted for reboots",
    };
    let paths: Vec<PathBuf> = files.iter().map(|(f, _)| persist::under(root, f)).collect();
    let missing: Vec<String> = paths.iter().filter(|p| p.symlink_metadata().is_err()).map(|p| p.display().to_string()).collect();
    if !missing.is_empty() {
        return Check::fail(name, format!("missing: {}", missing.join(", ")), setup_hint);
    }
    // Each file that names VIPs must name all of its VIPs.
    for (path, (_, named)) in paths.iter().zip(&files) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let absent: Vec<String> = named.iter().filter(|v| !text.contains(&format!("{v}/"))  && !text.contains(&format!("--vip {v}"))).map(|v| v.to_string()).collect();
        if !absent.is_empty() {
            return Check::fail(name, format!("{} does not name VIP {}", path.display(), absent.join(", ")), setup_hint);
        }
    }
    Check::pass(name, paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))
}

/// `--mss-clamp` (`--mss-clamp6`): tula's nftables table of `family` clamps
/// every VIP's SYN and SYN-ACK to `mss`, and (unless not persisted) comes back
/// after a reboot.
fn check_mss_clamp(
    family: mss_clamp::Family,
    mss: u16,
    vips: &[IpAddr],
    method: Method,
    persist: Persist,
    root: &Path,
    setup_hint: &str,
) -> Result<Check, DecapError> {
    let table = format!("nftables table {} {}", family.name(), mss_clamp::TABLE);
    let which = if family == mss_clamp::Family::Ip { "VIPs" } else { "IPv6 VIPs" };
    let name = format!("TCP MSS of SYN and SYN-ACK from the {which} clamped to {mss}");
    let installed = match mss_clamp::read_of(family)? {
        None => return Ok(Check::fail(name, format!("{table} does not exist"), setup_hint)),
        Some(installed) => installed,
    };
    if !installed.clamps(vips, mss) {
        let missing: Vec<String> = vips.iter().filter(|v| !installed.vips.contains(v)).map(|v| v.to_string()).collect();
        let mut problems = Vec::new();
        if !installed.output_hook {
            problems.push("its chain does not hook output".to_string());
        }
        if !installed.syn_only {
            problems.push("no rule matches SYN and SYN-ACK".to_string());
        }
        match installed.mss {
            Some(set) if set != mss => problems.push(format!("it sets MSS {set}")),
            None => problems.push("no rule sets the MSS".to_string()),
            _ => {}
        }
        if !missing.is_empty() {
            problems.push(format!("it does not match VIP {}", missing.join(", ")));
        }
        return Ok(Check::fail(name, format!("{table}: {}", problems.join("; ")), setup_hint));
    }
    let kept = match (persist, method) {
        (Persist::None, _) => None,
        (_, Method::Xdp) => {
            let unit = std::fs::read_to_string(persist::under(root, persist::UNIT_FILE)).unwrap_or_default();
            Some((persist::UNIT_FILE, unit.contains(&format!("{}={mss}", family.flag()))))
        }
        (_, Method::Kernel) => {
            let file = std::fs::read_to_string(persist::under(root, persist::NFT_FILE)).unwrap_or_default();
            let enabled = persist::under(root, persist::MSS_UNIT_WANTS_LINK).symlink_metadata().is_ok();
            let ruleset = file.split(&format!("table {} {} {{", family.name(), mss_clamp::TABLE)).nth(1).unwrap_or_default();
            let ruleset = ruleset.split("\n}\n").next().unwrap_or_default();
            let clamps = ruleset.contains(&format!("maxseg size set {mss} ")) && vips.iter().all(|v| ruleset.contains(&v.to_string()));
            Some((persist::NFT_FILE, enabled && clamps))
        }
    };
    Ok(match kept {
        Some((file, false)) => Check::fail(
            name,
            format!("{table} clamps now, but /{file} does not bring it back after a reboot"),
            setup_hint,
        ),
        Some((file, true)) => Check::pass(name, format!("{table}, persisted in /{file}")),
        None => Check::pass(name, format!("{table}, not persisted (--persist none)")),
    })
}

fn check_traffic(
    method: Method,
    tunnels: &[(&str, &str)],
    pinned: Option<&PinnedDecap>,
    local: &[IpAddr],
) -> Result<Check, DecapError> {
    let name = "decapsulated packets seen";
    let fix = format!(
        "send traffic to a VIP through the load balancer; if none arrives, check that it tunnels to {} \
         and that nothing on the path drops IP protocol 4{}",
        if local.is_empty() { "this host".to_string() } else { list(local) },
        if local.iter().any(IpAddr::is_ipv6) { " or IPv6 next header 41 or 4" } else { "" }
    );
    match method {
        Method::Kernel => {
            let mut seen = Vec::new();
            let mut idle = Vec::new();
            for (_, tunnel) in tunnels {
                match tula_net::link_stats(tunnel) {
                    Ok(stats) if stats.rx_packets > 0 => {
                        seen.push(format!("{tunnel} received {} packets ({} bytes)", stats.rx_packets, stats.rx_bytes))
                    }
                    Ok(_) => idle.push(format!("{tunnel} has received nothing yet")),
                    Err(_) => idle.push(format!("{tunnel} does not exist")),
                }
            }
            Ok(if seen.is_empty() { Check::fail(name, idle.join("; "), fix) } else { Check::pass(name, seen.join("; ")) })
        }
        Method::Xdp => {
            let Some(pinned) = pinned else {
                return Ok(Check::fail(name, "no decapsulation program, so no counters", fix));
            };
            let counters = pinned.counters()?;
            if counters.decapsulated_packets > 0 {
                Ok(Check::pass(name, counters.to_string()))
            } else {
                Ok(Check::fail(name, format!("none yet: {counters}"), fix))
            }
        }
    }
}

fn list(addrs: &[impl Display]) -> String {
    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
}
