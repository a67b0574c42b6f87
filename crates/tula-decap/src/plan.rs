//! Setup as a plan: read the host, list the changes that would bring it to
//! the wanted state, then apply them (recording each in the state file) or
//! just print them. Teardown undoes the recorded changes in reverse.

use crate::mss_clamp;
use crate::persist::{self, Persist};
use crate::program::{self, PinnedDecap};
use crate::state::State;
use crate::{Change, DecapError};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// How the backend strips the outer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The ipip module and its tunl0 device (the product description's way).
    Kernel,
    /// tula's XDP program on the uplink, for hosts without the ipip module.
    Xdp,
}

/// The kernel's IPIP device: its catch-all tunnel, created when ipip loads.
pub const TUNNEL: &str = "tunl0";
/// The kernel's IPv6 tunnel device: its catch-all (mode any: IP6IP6 and IPv4
/// in IPv6), created when ip6_tunnel loads.
pub const TUNNEL6: &str = "ip6tnl0";
/// The modules that create [`TUNNEL`] and [`TUNNEL6`].
pub const IPIP_MODULE: &str = "ipip";
pub const IP6_TUNNEL_MODULE: &str = "ip6_tunnel";

/// What `tula decap setup` was asked to do.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// IPv4 and IPv6 VIPs.
    pub vips: Vec<IpAddr>,
    pub method: Method,
    /// The uplink; default: the device of the default route, else the only up interface.
    pub interface: Option<String>,
    pub persist: Persist,
    /// Prefix of every file path read or written for persistence and state.
    pub root: PathBuf,
    /// The `tula` binary the XDP boot unit runs.
    pub tula_binary: PathBuf,
    /// Clamp the TCP MSS of SYN and SYN-ACK sent from the VIPs. `None`: keep
    /// what an earlier setup chose (no clamp if none did). Either of the two
    /// turns the clamp on for every VIP; the other family's MSS is then `Auto`.
    pub mss_clamp: Option<MssClamp>,
    /// The same for the IPv6 VIPs (`--mss-clamp6`).
    pub mss_clamp6: Option<MssClamp>,
}

/// The MSS `--mss-clamp` clamps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MssClamp {
    /// What fits a tunnel over the uplink: its MTU - 20 (IPIP) - 40 (IPv4, TCP).
    Auto,
    To(u16),
}

impl SetupOptions {
    pub fn new(method: Method, vips: impl IntoIterator<Item = impl Into<IpAddr>>) -> SetupOptions {
        SetupOptions {
            vips: vips.into_iter().map(Into::into).collect(),
            method,
            interface: None,
            persist: Persist::Auto,
            root: PathBuf::from("/"),
            tula_binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/tula")),
            mss_clamp: None,
            mss_clamp6: None,
        }
    }
}

/// The changes setup would make, in order, and what the reader should know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub method: Method,
    pub interface: String,
    pub persist: Persist,
    /// VIPs of this and every earlier setup on the host, IPv4 first.
    pub vips: Vec<IpAddr>,
    /// The MSS SYN and SYN-ACK from the IPv4 VIPs are clamped to, if they are.
    pub mss_clamp: Option<u16>,
    /// The same for the IPv6 VIPs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mss_clamp6: Option<u16>,
    pub changes: Vec<Change>,
    pub notes: Vec<String>,
}

/// What applying a plan did.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    pub plan: Plan,
    pub applied: Vec<Change>,
    pub notes: Vec<String>,
}

/// What teardown did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TeardownReport {
    pub undone: Vec<String>,
    /// Changes that could not be undone, with why; they stay in the state file.
    pub failed: Vec<String>,
}

/// The sysctls of a method: the product description's four, with `rp_filter`
/// off on the device where decapsulated packets appear.
pub fn sysctls(method: Method, interface: &str) -> Vec<(String, String)> {
    let device = match method {
        Method::Kernel => TUNNEL,
        Method::Xdp => interface,
    };
    [
        ("net.ipv4.conf.all.arp_ignore".to_string(), "1"),
        ("net.ipv4.conf.all.arp_announce".to_string(), "2"),
        (tula_net::sysctl::conf_key(device, "rp_filter"), "0"),
        ("net.ipv4.conf.all.rp_filter".to_string(), "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// The sysctls a setup with these VIPs needs: [`sysctls`] for IPv4 VIPs, and
/// with the kernel method `rp_filter` off on [`TUNNEL6`] too, where IPv4 in
/// IPv6 comes out. IPv6 VIPs need none: IPv6 has no `rp_filter`, and the
/// kernel answers Neighbour Solicitations only for addresses of the receiving
/// interface (the VIP is on `lo`), so it needs no `arp_ignore`.
pub fn sysctls_for(method: Method, interface: &str, vips: &[IpAddr]) -> Vec<(String, String)> {
    if !vips.iter().any(IpAddr::is_ipv4) {
        return Vec::new();
    }
    let mut settings = sysctls(method, interface);
    if method == Method::Kernel && vips.iter().any(IpAddr::is_ipv6) {
        settings.insert(3, (tula_net::sysctl::conf_key(TUNNEL6, "rp_filter"), "0".to_string()));
    }
    settings
}

/// The device a VIP goes on: `tunl0` for an IPv4 VIP of the kernel method, else `lo`.
pub fn vip_device(method: Method, vip: IpAddr) -> &'static str {
    match (method, vip) {
        (Method::Kernel, IpAddr::V4(_)) => TUNNEL,
        _ => "lo",
    }
}

/// Reads the host (this thread's namespace, files under `opts.root`) and
/// lists the changes setup would make. Changes nothing.
pub fn plan_setup(opts: &SetupOptions) -> Result<Plan, DecapError> {
    if opts.vips.is_empty() {
        return Err(DecapError::NoVips);
    }
    let state = State::load(&opts.root)?.unwrap_or_default();
    let mut vips: Vec<IpAddr> = state.vips.iter().chain(&opts.vips).copied().collect();
    vips.sort();
    vips.dedup();
    let interface = match &opts.interface {
        Some(name) => tula_net::link(name)?.name,
        None => default_uplink()?,
    };
    let addresses = tula_net::addresses()?;
    let local = tunnel_addresses(&addresses, &interface, &vips);
    if local.is_empty() {
        return Err(DecapError::NoTunnelAddress { interface });
    }
    // IPv6 VIPs arrive only in IP6IP6; IPv4 VIPs in IPIP or in IPv6 (4in6).
    if vips.iter().any(IpAddr::is_ipv6) && !local.iter().any(IpAddr::is_ipv6) {
        return Err(DecapError::NoTunnelAddress6 { interface });
    }
    for vip in &vips {
        let device = vip_device(opts.method, *vip);
        if let Some(other) = addresses.iter().find(|a| a.addr == *vip && a.link != device) {
            return Err(DecapError::VipOwnedElsewhere {
                vip: *vip,
                prefix: other.prefix,
                device: other.link.clone(),
                wanted: device.to_string(),
            });
        }
    }

    let clamp = [opts.mss_clamp.is_some(), opts.mss_clamp6.is_some(), state.mss_clamp.is_some(), state.mss_clamp6.is_some()];
    let (mut mss_clamp, mut mss_clamp6) = (None, None);
    let mut notes = Vec::new();
    if clamp.contains(&true) {
        let mtu = tula_net::link(&interface)?.mtu;
        // IPv4 VIPs may come in IPv6 where the uplink has an IPv6 address: leave room for that header.
        let in_ipv6 = local.iter().any(IpAddr::is_ipv6);
        if vips.iter().any(IpAddr::is_ipv4) {
            let auto = if in_ipv6 { mss_clamp::default_mss_in_ipv6(mtu) } else { mss_clamp::default_mss(mtu) };
            let mss = clamp_mss(mss_clamp::Family::Ip, opts.mss_clamp, state.mss_clamp, auto, mss_clamp::MIN_MSS)?;
            if in_ipv6 && opts.mss_clamp == Some(MssClamp::Auto) {
                notes.push(format!(
                    "the IPv4 VIPs' MSS is {mss} (uplink MTU {mtu} - 40 - 40), which fits IPv4 in IPv6 too; \
                     where the load balancer sends them in IPIP only, --mss-clamp={} fits",
                    mss_clamp::default_mss(mtu)
                ));
            }
            mss_clamp = Some(mss);
        }
        if vips.iter().any(IpAddr::is_ipv6) {
            let auto = mss_clamp::default_mss6(mtu);
            mss_clamp6 = Some(clamp_mss(mss_clamp::Family::Ip6, opts.mss_clamp6, state.mss_clamp6, auto, mss_clamp::MIN_MSS6)?);
        }
    }
    let persist = opts.persist.resolve(&opts.root);
    let mut plan = Plan {
        method: opts.method,
        interface,
        persist,
        vips,
        mss_clamp,
        mss_clamp6,
        changes: Vec::new(),
        notes,
    };
    match opts.method {
        Method::Kernel => plan_kernel(&mut plan, &addresses, &local)?,
        Method::Xdp => plan_xdp(&mut plan, &addresses, &local)?,
    }
    if let Some(mss) = plan.mss_clamp {
        let vips4 = ipv4_only(&plan.vips);
        if !mss_clamp::read()?.is_some_and(|installed| installed.clamps(&vips4, mss)) {
            plan.changes.push(Change::ClampMss { vips: vips4, mss });
        }
    }
    if let Some(mss) = plan.mss_clamp6 {
        let vips6 = ipv6_only(&plan.vips);
        if !mss_clamp::read6()?.is_some_and(|installed| installed.clamps(&vips6, mss)) {
            plan.changes.push(Change::ClampMss6 { vips: vips6, mss });
        }
    }
    if persist != Persist::None {
        plan_files(&mut plan, opts, &local)?;
    }
    Ok(plan)
}

/// IPv4 VIPs: the ipip module and `tunl0`; IPv6 VIPs: the ip6_tunnel module
/// and `ip6tnl0`. Both modules load first, so a missing one fails the plan
/// before anything else changed.
fn plan_kernel(plan: &mut Plan, addresses: &[tula_net::Address], local: &[IpAddr]) -> Result<(), DecapError> {
    let mut tunnels = Vec::new();
    if plan.vips.iter().any(IpAddr::is_ipv4) {
        let local = first_v4(local).ok_or_else(|| DecapError::NoTunnelAddress { interface: plan.interface.clone() })?;
        tunnels.push((IPIP_MODULE, TUNNEL, Change::CreateIpipTunnel { name: TUNNEL.into(), local }, local.to_string()));
    }
    if plan.vips.iter().any(IpAddr::is_ipv6) {
        let local = first_v6(local).ok_or_else(|| DecapError::NoTunnelAddress6 { interface: plan.interface.clone() })?;
        tunnels.push((IP6_TUNNEL_MODULE, TUNNEL6, Change::CreateIp6Tunnel { name: TUNNEL6.into(), local }, local.to_string()));
    }
    for (module, _, _, _) in &tunnels {
        if !Path::new("/sys/module").join(module).exists() {
            plan.changes.push(Change::LoadModule { name: module.to_string() });
            if let Some(why) = module_unavailable(module) {
                plan.notes.push(format!(
                    "the {module} module is not available on this host ({why}): applying this plan fails before \
                     it changes anything; `--method xdp` works without it"
                ));
            }
        }
    }
    let mut down = Vec::new();
    for (_, name, create, local) in tunnels {
        match tula_net::link(name).ok() {
            None => plan.changes.push(create),
            Some(link) => {
                let kind = if name == TUNNEL { "IPIP device, which decapsulates IPIP" } else {
                    "IPv6 tunnel device, which decapsulates IP6IP6 and IPv4 in IPv6"
                };
                plan.notes.push(format!(
                    "{name} exists: it is the kernel's catch-all {kind} sent to any address of this host \
                     ({local} included), so its local address is left as it is"
                ));
                if link.up {
                    continue;
                }
            }
        }
        down.push(name);
    }
    // Sysctls before addresses: the host must never answer ARP for a VIP, not even for a moment.
    plan_sysctls(plan);
    plan_vip_addresses(plan, addresses);
    for name in down {
        plan.changes.push(Change::SetLinkUp { link: name.into() });
    }
    Ok(())
}

fn plan_xdp(plan: &mut Plan, addresses: &[tula_net::Address], local: &[IpAddr]) -> Result<(), DecapError> {
    if let Some(netns) = tula_net::under_ip_netns_exec() {
        return Err(program::netns_exec_error(&netns));
    }
    plan_sysctls(plan);
    plan_vip_addresses(plan, addresses);
    if !program::bpffs_mounted()? {
        plan.changes.push(Change::MountBpffs { path: PathBuf::from(program::BPFFS) });
    }
    for pin_dir in program::stale_pin_dirs() {
        plan.changes.push(Change::RemoveStalePins { pin_dir });
    }
    let pin_dir = program::pin_dir(&plan.interface)?;
    let ifindex = tula_net::link(&plan.interface)?.index;
    let (interface, local, vips) = (plan.interface.clone(), local.to_vec(), plan.vips.clone());
    match PinnedDecap::open(&pin_dir) {
        Some(pinned) if pinned.attached_ifindex()? == ifindex => {
            let mut sorted_local = local.clone();
            sorted_local.sort();
            if pinned.all_local_addresses()? != sorted_local || pinned.all_vips()? != vips {
                plan.changes.push(Change::UpdateDecapMaps { interface, pin_dir, local, vips });
            }
        }
        _ => plan.changes.push(Change::AttachDecap { interface, pin_dir, local, vips }),
    }
    Ok(())
}

fn plan_sysctls(plan: &mut Plan) {
    for (key, to) in sysctls_for(plan.method, &plan.interface, &plan.vips) {
        let from = tula_net::sysctl::read(&key).ok();
        if from.as_deref() != Some(to.as_str()) {
            plan.changes.push(Change::SetSysctl { key, from, to });
        }
    }
}

fn plan_vip_addresses(plan: &mut Plan, addresses: &[tula_net::Address]) {
    for vip in &plan.vips {
        let device = vip_device(plan.method, *vip);
        if !addresses.iter().any(|a| a.addr == *vip && a.link == device) {
            plan.changes.push(Change::AddAddress { link: device.into(), addr: *vip, prefix: host_prefix(*vip) });
        }
    }
}

fn plan_files(plan: &mut Plan, opts: &SetupOptions, local: &[IpAddr]) -> Result<(), DecapError> {
    let root = &opts.root;
    let settings = sysctls_for(plan.method, &plan.interface, &plan.vips);
    let mut files = Vec::new();
    if !settings.is_empty() {
        files.push((persist::SYSCTL_FILE, persist::sysctl_file(&settings), 0o644));
    }
    // (link, unit file): units to enable.
    let mut units = Vec::new();
    match (plan.method, plan.persist) {
        (Method::Kernel, persist) => {
            let vips4 = ipv4_only(&plan.vips);
            let vips6 = ipv6_only(&plan.vips);
            let tunnel4 = first_v4(local).filter(|_| !vips4.is_empty()).map(|local| (local, vips4.as_slice()));
            let tunnel6 = first_v6(local).filter(|_| !vips6.is_empty()).map(|local| (local, vips6.as_slice()));
            if tunnel4.is_some() {
                files.push((persist::MODULES_FILE, persist::modules_file(), 0o644));
            }
            if tunnel6.is_some() {
                files.push((persist::MODULES6_FILE, persist::modules6_file(), 0o644));
            }
            if persist == Persist::Netplan {
                // netplan refuses world-readable configuration.
                files.push((persist::NETPLAN_FILE, persist::netplan_yaml(tunnel4, tunnel6), 0o600));
            } else {
                if let Some((local, vips4)) = tunnel4 {
                    files.push((persist::NETDEV_FILE, persist::networkd_netdev(local), 0o644));
                    files.push((persist::NETWORK_FILE, persist::networkd_network(vips4), 0o644));
                }
                if let Some((local, vips6)) = tunnel6 {
                    files.push((persist::NETDEV6_FILE, persist::networkd_netdev6(local), 0o644));
                    files.push((persist::NETWORK6_FILE, persist::networkd_network6(), 0o644));
                    files.push((persist::LO_NETWORK_FILE, persist::networkd_lo_network(vips6), 0o644));
                }
            }
            // The XDP method's boot unit runs setup again; here the table needs its own.
            let clamp4 = plan.mss_clamp.map(|mss| (vips4.as_slice(), mss));
            let clamp6 = plan.mss_clamp6.map(|mss| (vips6.as_slice(), mss));
            if clamp4.is_some() || clamp6.is_some() {
                let families = mss_families(plan.mss_clamp, plan.mss_clamp6);
                files.push((persist::NFT_FILE, persist::nft_file(clamp4, clamp6), 0o644));
                files.push((persist::MSS_UNIT_FILE, persist::mss_clamp_unit(&families), 0o644));
                units.push((persist::MSS_UNIT_WANTS_LINK, persist::MSS_UNIT_FILE));
            }
        }
        (Method::Xdp, _) => {
            let unit =
                persist::systemd_unit(&opts.tula_binary, &plan.interface, &plan.vips, plan.mss_clamp, plan.mss_clamp6);
            files.push((persist::UNIT_FILE, unit, 0o644));
            units.push((persist::UNIT_WANTS_LINK, persist::UNIT_FILE));
        }
    }
    for (relative, contents, mode) in files {
        let path = persist::under(root, relative);
        let previous = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(DecapError::io(format!("reading {}", path.display()), e)),
        };
        if previous.as_deref() != Some(contents.as_str()) {
            plan.changes.push(Change::WriteFile { path, contents, mode, previous });
        }
    }
    for (link, unit) in units {
        let path = persist::under(root, link);
        let target = Path::new("/").join(unit);
        if std::fs::read_link(&path).ok().as_deref() != Some(target.as_path()) {
            if path.symlink_metadata().is_ok() {
                let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                return Err(DecapError::io(
                    format!("enabling {name}: {} exists and is not tula's link; remove it", path.display()),
                    std::io::ErrorKind::AlreadyExists.into(),
                ));
            }
            plan.changes.push(Change::Symlink { path, target });
        }
    }
    Ok(())
}

/// Applies a plan, recording every change made in the state file as it
/// goes, so a failure half-way still leaves teardown able to undo the rest.
pub fn apply(plan: &Plan, root: &Path) -> Result<SetupReport, DecapError> {
    let loaded = State::load(root)?;
    let mut state = loaded.clone().unwrap_or_default();
    state.method = Some(plan.method);
    state.interface = Some(plan.interface.clone());
    state.persist = Some(plan.persist);
    state.vips = plan.vips.clone();
    state.mss_clamp = plan.mss_clamp;
    state.mss_clamp6 = plan.mss_clamp6;
    let mut report = SetupReport { plan: plan.clone(), applied: Vec::new(), notes: Vec::new() };
    for change in &plan.changes {
        match change.apply() {
            Ok(Some(done)) => {
                report.applied.push(done.clone());
                state.record(done);
                state.save(root)?;
            }
            Ok(None) => report.notes.push(match change {
                Change::CreateIp6Tunnel { .. } => format!(
                    "{TUNNEL6} appeared when the ip6_tunnel module loaded (the kernel's catch-all IPv6 tunnel \
                     device); it is used as it is"
                ),
                _ => format!(
                    "{TUNNEL} appeared when the ipip module loaded (the kernel's catch-all IPIP device); \
                     it is used as it is"
                ),
            }),
            Err(e) => {
                if !report.applied.is_empty() {
                    state.save(root)?;
                }
                return Err(e);
            }
        }
    }
    // A first setup on an already configured host records its settings
    // (nothing to undo); later runs only touch the file if something changed.
    if loaded.as_ref() != Some(&state) && (loaded.is_some() || !plan.changes.is_empty()) {
        state.save(root)?;
    }
    Ok(report)
}

/// Plans and applies.
pub fn setup(opts: &SetupOptions) -> Result<SetupReport, DecapError> {
    apply(&plan_setup(opts)?, &opts.root)
}

/// Undoes what setup recorded under `root`, newest first. The state file goes
/// once everything is undone; what could not be undone stays in it.
pub fn teardown(root: &Path) -> Result<TeardownReport, DecapError> {
    let mut state = State::load(root)?.ok_or_else(|| DecapError::NoState { path: State::path(root) })?;
    if state.changes.iter().any(|c| matches!(c, Change::AttachDecap { .. })) {
        // From there the pins look absent, and the program would stay attached.
        if let Some(netns) = tula_net::under_ip_netns_exec() {
            return Err(program::netns_exec_error(&netns));
        }
    }
    let mut report = TeardownReport::default();
    let mut kept = Vec::new();
    for change in state.changes.iter().rev() {
        match change.undo() {
            Ok(text) if text.is_empty() => {}
            Ok(text) => report.undone.push(text),
            Err(e) => {
                report.failed.push(format!("{}: {e}", change.summary()));
                kept.insert(0, change.clone());
            }
        }
    }
    if kept.is_empty() {
        State::remove(root)?;
    } else {
        state.changes = kept;
        state.save(root)?;
    }
    Ok(report)
}

/// The uplink when none is given: the device of the default route (IPv4,
/// else IPv6), else the only interface that is up (besides `lo`).
pub fn default_uplink() -> Result<String, DecapError> {
    // A route lookup sends nothing; 192.0.2.1 (TEST-NET-1) has no route of its own.
    if let Ok(route) = tula_net::route_get(Ipv4Addr::new(192, 0, 2, 1)) {
        if !route.dev.is_empty() && route.dev != "lo" {
            return Ok(route.dev);
        }
    }
    // An IPv6-only host: 100::1 (the discard prefix, RFC 6666) has no route of its own either.
    if let Ok(dev) = tula_net::route_dev6(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 1)) {
        if !dev.is_empty() && dev != "lo" {
            return Ok(dev);
        }
    }
    let up: Vec<String> = tula_net::links()?.into_iter().filter(|l| l.up && l.name != "lo").map(|l| l.name).collect();
    match up.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(DecapError::NoUplink {
            candidates: if up.is_empty() { "none".into() } else { up.join(", ") },
        }),
    }
}

/// The addresses of `interface` a load balancer may tunnel to: its IPv4
/// addresses (primary first, as the kernel lists them), then its global IPv6
/// ones (a link-local address cannot be routed to, a privacy address goes away).
pub fn tunnel_addresses(addresses: &[tula_net::Address], interface: &str, vips: &[IpAddr]) -> Vec<IpAddr> {
    let mut local: Vec<IpAddr> = Vec::new();
    for a in addresses.iter().filter(|a| a.link == interface) {
        let usable = match a.addr {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => !v6.is_unicast_link_local() && !v6.is_loopback() && !v6.is_multicast() && !a.temporary,
        };
        if usable && !vips.contains(&a.addr) && !local.contains(&a.addr) {
            local.push(a.addr);
        }
    }
    local.sort_by_key(|a| a.is_ipv6()); // stable: kernel order within a family
    local
}

/// The MSS of one family: as asked, else as recorded, else `auto`.
fn clamp_mss(
    family: mss_clamp::Family,
    asked: Option<MssClamp>,
    recorded: Option<u16>,
    auto: u16,
    min: u16,
) -> Result<u16, DecapError> {
    match asked {
        Some(MssClamp::To(mss)) if mss < min => Err(DecapError::MssTooSmall { flag: family.flag(), mss, min }),
        Some(MssClamp::To(mss)) => Ok(mss),
        Some(MssClamp::Auto) => Ok(auto),
        None => Ok(recorded.unwrap_or(auto)),
    }
}

/// The nftables families clamped, IPv4 first.
pub fn mss_families(mss_clamp: Option<u16>, mss_clamp6: Option<u16>) -> Vec<mss_clamp::Family> {
    let mut families = Vec::new();
    if mss_clamp.is_some() {
        families.push(mss_clamp::Family::Ip);
    }
    if mss_clamp6.is_some() {
        families.push(mss_clamp::Family::Ip6);
    }
    families
}

/// The first IPv4 address of a list (the kernel method's `tunl0` local address).
pub fn first_v4(addrs: &[IpAddr]) -> Option<Ipv4Addr> {
    addrs.iter().find_map(|a| match a {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    })
}

/// The first IPv6 address of a list (the kernel method's `ip6tnl0` local address).
pub fn first_v6(addrs: &[IpAddr]) -> Option<Ipv6Addr> {
    addrs.iter().find_map(|a| match a {
        IpAddr::V6(v6) => Some(*v6),
        IpAddr::V4(_) => None,
    })
}

/// The IPv6 addresses of a list.
pub fn ipv6_only(addrs: &[IpAddr]) -> Vec<Ipv6Addr> {
    addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        })
        .collect()
}

/// The IPv4 addresses of a list.
pub fn ipv4_only(addrs: &[IpAddr]) -> Vec<Ipv4Addr> {
    addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// A VIP's prefix on its device: /32 or /128.
pub fn host_prefix(vip: IpAddr) -> u8 {
    if vip.is_ipv4() {
        32
    } else {
        128
    }
}

/// Why a module cannot be loaded, if we can tell without trying.
fn module_unavailable(name: &str) -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?.trim().to_string();
    let dir = Path::new("/lib/modules").join(&release);
    let Ok(dep) = std::fs::read_to_string(dir.join("modules.dep")) else {
        return Some(format!("no {}", dir.join("modules.dep").display()));
    };
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let listed = |text: &str| text.lines().any(|l| l.split(':').next().is_some_and(|p| p.contains(&format!("/{name}.ko"))));
    (!listed(&dep) && !listed(&builtin)).then(|| format!("{name}.ko is not in {}", dir.join("modules.dep").display()))
}
