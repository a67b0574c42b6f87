//! One change to the host: how to describe it, make it, and undo it.
//! A setup is a list of these; the state file records the ones made.

use crate::mss_clamp;
use crate::program::{self, DecapProgram, PinnedDecap};
use crate::DecapError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// `modprobe NAME`.
    LoadModule { name: String },
    /// `ip tunnel add NAME mode ipip local LOCAL`, made only if the kernel did
    /// not already create `tunl0` when the module loaded.
    CreateIpipTunnel { name: String, local: Ipv4Addr },
    /// `ip -6 tunnel add NAME mode any local LOCAL`, made only if the kernel
    /// did not already create `ip6tnl0` when the module loaded.
    CreateIp6Tunnel { name: String, local: Ipv6Addr },
    /// `sysctl -w KEY=TO`; `from` is the value before, `None` if the key did not
    /// exist yet (its interface is created by an earlier change).
    SetSysctl { key: String, from: Option<String>, to: String },
    /// `ip addr add ADDR/PREFIX dev LINK` (`nodad` for IPv6).
    AddAddress { link: String, addr: IpAddr, prefix: u8 },
    /// `ip link set LINK up`.
    SetLinkUp { link: String },
    /// `mount -t bpf bpf /sys/fs/bpf`.
    MountBpffs { path: PathBuf },
    /// Load bpf/decap.o, fill its maps (both families), attach it to `interface`, pin under `pin_dir`.
    AttachDecap { interface: String, pin_dir: PathBuf, local: Vec<IpAddr>, vips: Vec<IpAddr> },
    /// Set the maps of an already attached program to exactly these addresses.
    UpdateDecapMaps { interface: String, pin_dir: PathBuf, local: Vec<IpAddr>, vips: Vec<IpAddr> },
    /// Remove pins whose XDP link lost its interface (a namespace or device
    /// deleted without teardown): such a link can never carry traffic again.
    RemoveStalePins { pin_dir: PathBuf },
    /// Write `contents` to `path`; `previous` is what was there, to restore.
    WriteFile { path: PathBuf, contents: String, mode: u32, previous: Option<String> },
    /// `ln -s TARGET PATH` (how `systemctl enable` enables a unit).
    Symlink { path: PathBuf, target: PathBuf },
    /// Load tula's nftables table (`table ip tula_dsr`, replacing an earlier
    /// one) clamping the MSS of SYN and SYN-ACK sent from `vips` to `mss`.
    ClampMss { vips: Vec<Ipv4Addr>, mss: u16 },
    /// The same for IPv6 VIPs: `table ip6 tula_dsr`.
    ClampMss6 { vips: Vec<Ipv6Addr>, mss: u16 },
}

impl Change {
    /// Two changes to the same object: the state file keeps only the first,
    /// so teardown restores what was there before the first setup.
    pub(crate) fn same_object(&self, other: &Change) -> bool {
        use Change::*;
        match (self, other) {
            (LoadModule { name: a }, LoadModule { name: b }) => a == b,
            (CreateIpipTunnel { name: a, .. }, CreateIpipTunnel { name: b, .. }) => a == b,
            (CreateIp6Tunnel { name: a, .. }, CreateIp6Tunnel { name: b, .. }) => a == b,
            (SetSysctl { key: a, .. }, SetSysctl { key: b, .. }) => a == b,
            (AddAddress { link: l1, addr: a1, .. }, AddAddress { link: l2, addr: a2, .. }) => l1 == l2 && a1 == a2,
            (SetLinkUp { link: a }, SetLinkUp { link: b }) => a == b,
            (MountBpffs { path: a }, MountBpffs { path: b }) => a == b,
            (AttachDecap { pin_dir: a, .. }, AttachDecap { pin_dir: b, .. }) => a == b,
            (WriteFile { path: a, .. }, WriteFile { path: b, .. }) => a == b,
            (Symlink { path: a, .. }, Symlink { path: b, .. }) => a == b,
            (ClampMss { .. }, ClampMss { .. }) => true, // one table
            (ClampMss6 { .. }, ClampMss6 { .. }) => true,
            _ => false,
        }
    }

    /// The first line of the description.
    pub fn summary(&self) -> String {
        self.to_string().lines().next().unwrap_or_default().trim_end_matches(':').to_string()
    }

    /// The shell command an operator would type for this change (what the
    /// manual steps show), or `None` where only tula can make it (the XDP
    /// program and its maps). Files are written with a here-document.
    pub fn command(&self) -> Option<String> {
        Some(match self {
            Change::LoadModule { name } => format!("modprobe {name}"),
            // Loading ipip creates tunl0 on a normal host: `ip tunnel add` would fail with "File exists".
            Change::CreateIpipTunnel { name, local } => {
                format!("ip link show {name} >/dev/null 2>&1 || ip tunnel add {name} mode ipip local {local}")
            }
            Change::CreateIp6Tunnel { name, local } => {
                format!("ip link show {name} >/dev/null 2>&1 || ip -6 tunnel add {name} mode any local {local}")
            }
            Change::SetSysctl { key, to, .. } => format!("sysctl -w {key}={to}"),
            Change::AddAddress { link, addr, prefix } => {
                let nodad = if addr.is_ipv6() { " nodad" } else { "" };
                format!("ip addr add {addr}/{prefix} dev {link}{nodad}")
            }
            Change::SetLinkUp { link } => format!("ip link set {link} up"),
            Change::MountBpffs { path } => format!("mountpoint -q {0} || mount -t bpf bpf {0}", path.display()),
            Change::AttachDecap { .. } | Change::UpdateDecapMaps { .. } | Change::RemoveStalePins { .. } => return None,
            Change::WriteFile { path, contents, mode, .. } => {
                format!("install -D -m {mode:o} /dev/stdin {} <<'EOF'\n{contents}EOF", path.display())
            }
            Change::Symlink { path, target } => {
                let unit = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let dir = path.parent().unwrap_or(path);
                format!("mkdir -p {} && ln -sf {} {}    # = systemctl enable {unit}", dir.display(), target.display(), path.display())
            }
            Change::ClampMss { vips, mss } => format!("nft -f - <<'EOF'\n{}EOF", mss_clamp::script(vips, *mss)),
            Change::ClampMss6 { vips, mss } => format!("nft -f - <<'EOF'\n{}EOF", mss_clamp::script6(vips, *mss)),
        })
    }

    /// Whether teardown has anything to undo for this change.
    pub(crate) fn recorded(&self) -> bool {
        // Map updates are undone by detaching the program they belong to;
        // stale pins are gone for good.
        !matches!(self, Change::UpdateDecapMaps { .. } | Change::RemoveStalePins { .. })
    }

    /// Makes the change. Returns what was actually done, which differs from
    /// the plan only for `CreateIpipTunnel` when the kernel made `tunl0` itself.
    pub(crate) fn apply(&self) -> Result<Option<Change>, DecapError> {
        match self {
            Change::LoadModule { name } => {
                load_module(name)?;
                return Ok(Some(self.clone()));
            }
            Change::CreateIpipTunnel { name, local } => {
                if tula_net::link(name).is_ok() {
                    return Ok(None); // the kernel's catch-all device: it already receives every IPIP packet
                }
                tula_net::add_ipip_tunnel(name, *local)?;
            }
            Change::CreateIp6Tunnel { name, local } => {
                if tula_net::link(name).is_ok() {
                    return Ok(None); // the kernel's catch-all device: it already receives every IPv6 tunnel packet
                }
                tula_net::add_ip6_tunnel(name, *local)?;
            }
            Change::SetSysctl { key, to, .. } => tula_net::sysctl::write(key, to)?,
            Change::AddAddress { link, addr, prefix } => {
                tula_net::add_address(link, *addr, *prefix)?;
            }
            Change::SetLinkUp { link } => tula_net::set_up(link)?,
            Change::MountBpffs { .. } => program::mount_bpffs()?,
            Change::AttachDecap { interface, pin_dir, local, vips } => {
                // Pins left over from an interface that is gone would block new ones.
                program::remove_pins(pin_dir)?;
                let mut decap = DecapProgram::load()?;
                decap.set_addresses(local, vips)?;
                decap.attach_pinned(interface, pin_dir)?;
            }
            Change::UpdateDecapMaps { pin_dir, local, vips, .. } => {
                let pinned = PinnedDecap::open(pin_dir)
                    .ok_or_else(|| DecapError::bpf(format!("updating {}", pin_dir.display()), "the pins are gone"))?;
                pinned.set_addresses(local, vips)?;
            }
            Change::RemoveStalePins { pin_dir } => program::remove_pins(pin_dir)?,
            Change::WriteFile { path, contents, mode, .. } => write_file(path, contents, *mode)?,
            Change::Symlink { path, target } => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| DecapError::io(format!("creating {}", dir.display()), e))?;
                }
                std::os::unix::fs::symlink(target, path)
                    .map_err(|e| DecapError::io(format!("linking {} -> {}", path.display(), target.display()), e))?;
            }
            Change::ClampMss { vips, mss } => mss_clamp::install(vips, *mss)?,
            Change::ClampMss6 { vips, mss } => mss_clamp::install6(vips, *mss)?,
        }
        Ok(Some(self.clone()))
    }

    /// Undoes the change; `Ok(text)` says what was done (or why nothing was).
    pub(crate) fn undo(&self) -> Result<String, DecapError> {
        Ok(match self {
            Change::LoadModule { name } => {
                unload_module(name)?;
                format!("unloaded kernel module {name}")
            }
            Change::CreateIpipTunnel { name, .. } | Change::CreateIp6Tunnel { name, .. } => match tula_net::delete_link(name) {
                Ok(()) => format!("deleted tunnel {name}"),
                Err(tula_net::NetError::NoSuchLink { .. }) => format!("tunnel {name} is already gone"),
                Err(e) => return Err(e.into()),
            },
            Change::SetSysctl { key, from: Some(from), .. } => match tula_net::sysctl::write(key, from) {
                Ok(()) => format!("restored {key} = {from}"),
                Err(_) if !tula_net::sysctl::path(key).exists() => format!("{key} is gone with its interface"),
                Err(e) => return Err(e.into()),
            },
            Change::SetSysctl { key, from: None, .. } => format!("{key} goes with its interface"),
            Change::AddAddress { link, addr, prefix } => match tula_net::del_address(link, *addr, *prefix) {
                Ok(true) => format!("removed {addr}/{prefix} from {link}"),
                Ok(false) | Err(tula_net::NetError::NoSuchLink { .. }) => format!("{addr}/{prefix} is already off {link}"),
                Err(e) => return Err(e.into()),
            },
            Change::SetLinkUp { link } => match tula_net::set_down(link) {
                Ok(()) => format!("set {link} down"),
                Err(tula_net::NetError::NoSuchLink { .. }) => format!("{link} is gone"),
                Err(e) => return Err(e.into()),
            },
            // Left mounted: other tools pin there too, and a mounted bpffs is harmless.
            Change::MountBpffs { path } => format!("left bpffs mounted at {}", path.display()),
            Change::AttachDecap { interface, pin_dir, .. } => {
                program::remove_pins(pin_dir)?;
                format!("detached XDP decapsulation from {interface} and removed {}", pin_dir.display())
            }
            Change::UpdateDecapMaps { .. } | Change::RemoveStalePins { .. } => String::new(),
            Change::WriteFile { path, previous: Some(previous), mode, .. } => {
                write_file(path, previous, *mode)?;
                format!("restored the previous contents of {}", path.display())
            }
            Change::WriteFile { path, previous: None, .. } => {
                remove_file(path)?;
                format!("removed {}", path.display())
            }
            Change::Symlink { path, .. } => {
                remove_file(path)?;
                format!("removed {}", path.display())
            }
            Change::ClampMss { .. } => match mss_clamp::remove()? {
                true => format!("deleted nftables table ip {}", mss_clamp::TABLE),
                false => format!("nftables table ip {} is already gone", mss_clamp::TABLE),
            },
            Change::ClampMss6 { .. } => match mss_clamp::remove6()? {
                true => format!("deleted nftables table ip6 {}", mss_clamp::TABLE),
                false => format!("nftables table ip6 {} is already gone", mss_clamp::TABLE),
            },
        })
    }
}

/// One line per change (files add their contents, indented), each with the
/// command an operator would have typed, so the output maps onto the
/// product description's list.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::LoadModule { name } => write!(f, "load kernel module {name}  [{command}]", command = self.command().unwrap_or_default()),
            Change::CreateIpipTunnel { name, local } => write!(
                f,
                "create IPIP tunnel {name} with local {local} unless loading the module made it  [{}]",
                self.command().unwrap_or_default()
            ),
            Change::CreateIp6Tunnel { name, local } => write!(
                f,
                "create IPv6 tunnel {name} (mode any: IP6IP6 and IPv4 in IPv6) with local {local} unless loading \
                 the module made it  [{}]",
                self.command().unwrap_or_default()
            ),
            Change::SetSysctl { key, from, to } => {
                let was = from.as_deref().map_or("not set yet".to_string(), |v| format!("was {v}"));
                write!(f, "set {key} = {to} ({was})  [{}]", self.command().unwrap_or_default())
            }
            Change::AddAddress { link, addr, prefix } => {
                write!(f, "add {addr}/{prefix} to {link}  [{}]", self.command().unwrap_or_default())
            }
            Change::SetLinkUp { link } => write!(f, "bring {link} up  [{}]", self.command().unwrap_or_default()),
            Change::MountBpffs { path } => {
                write!(f, "mount bpffs at {}  [{}]", path.display(), self.command().unwrap_or_default())
            }
            Change::AttachDecap { interface, pin_dir, local, vips } => write!(
                f,
                "attach XDP decapsulation (bpf/decap.c) to {interface}: tunnel addresses {}, VIPs {}; pinned at {}",
                list(local),
                list(vips),
                pin_dir.display()
            ),
            Change::UpdateDecapMaps { interface, local, vips, .. } => write!(
                f,
                "update the XDP decapsulation maps on {interface}: tunnel addresses {}, VIPs {}",
                list(local),
                list(vips)
            ),
            Change::RemoveStalePins { pin_dir } => {
                write!(f, "remove stale pins at {} (their interface is gone)", pin_dir.display())
            }
            Change::WriteFile { path, contents, mode, previous } => {
                let what = if previous.is_some() { "replace" } else { "write new file" };
                writeln!(f, "{what} {} (mode {mode:o}):", path.display())?;
                for line in contents.lines() {
                    writeln!(f, "    |{}{line}", if line.is_empty() { "" } else { " " })?;
                }
                Ok(())
            }
            Change::Symlink { path, target } => {
                let unit = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                write!(f, "enable {unit}: link {} -> {}  [systemctl enable {unit}]", path.display(), target.display())
            }
            Change::ClampMss { vips, mss } => {
                write_clamp(f, mss_clamp::Family::Ip, &list(vips), *mss, &mss_clamp::ruleset(vips, *mss))
            }
            Change::ClampMss6 { vips, mss } => {
                write_clamp(f, mss_clamp::Family::Ip6, &list(vips), *mss, &mss_clamp::ruleset6(vips, *mss))
            }
        }
    }
}

/// A clamp change: what it does, then the table it loads, indented.
fn write_clamp(f: &mut fmt::Formatter<'_>, family: mss_clamp::Family, vips: &str, mss: u16, ruleset: &str) -> fmt::Result {
    writeln!(
        f,
        "clamp the TCP MSS of SYN and SYN-ACK sent from {vips} to {mss}: nftables table {} {} \
         (replacing an earlier one; no other table is touched)  [nft -f -]:",
        family.name(),
        mss_clamp::TABLE
    )?;
    for line in ruleset.lines() {
        writeln!(f, "    | {line}")?;
    }
    Ok(())
}

fn list(addrs: &[impl fmt::Display]) -> String {
    if addrs.is_empty() {
        return "(none)".into();
    }
    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
}

/// Loading a module is the one thing done through a program: finding the
/// right .ko (and its dependencies) is modprobe's job.
fn load_module(name: &str) -> Result<(), DecapError> {
    let missing = |detail: String| match name {
        crate::plan::IP6_TUNNEL_MODULE => DecapError::NoIp6TunnelModule { detail },
        _ => DecapError::NoIpipModule { detail },
    };
    let output =
        std::process::Command::new("modprobe").arg(name).output().map_err(|e| missing(format!("cannot run modprobe: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(missing(format!("modprobe {name} failed: {stderr}")));
    }
    Ok(())
}

fn unload_module(name: &str) -> Result<(), DecapError> {
    let cname = std::ffi::CString::new(name).expect("module names have no NUL");
    // SAFETY: delete_module(2) with a valid C string and O_NONBLOCK (fail if in use).
    let rc = unsafe { libc::syscall(libc::SYS_delete_module, cname.as_ptr(), libc::O_NONBLOCK) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(()); // not loaded any more
        }
        return Err(DecapError::io(format!("unloading kernel module {name} (is it in use?)"), e));
    }
    Ok(())
}

pub(crate) fn write_file(path: &std::path::Path, contents: &str, mode: u32) -> Result<(), DecapError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DecapError::io(format!("creating {}", dir.display()), e))?;
    }
    std::fs::write(path, contents).map_err(|e| DecapError::io(format!("writing {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| DecapError::io(format!("setting the mode of {}", path.display()), e))
}

fn remove_file(path: &std::path::Path) -> Result<(), DecapError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DecapError::io(format!("removing {}", path.display()), e)),
    }
}
