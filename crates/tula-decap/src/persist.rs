//! The files that make a backend's setup survive a reboot, with their exact
//! contents: the sysctl file, the tunnel in the host's network manager
//! (systemd-networkd or netplan), the module to load at boot, the boot unit
//! that re-attaches the XDP program, and the MSS clamp's nftables file and unit.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Where the tunnel configuration of the kernel method is persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Persist {
    /// netplan if /etc/netplan has YAML files and netplan is installed, else networkd.
    Auto,
    /// systemd-networkd .netdev/.network files.
    Networkd,
    /// A netplan YAML file.
    Netplan,
    /// Write no files at all (the change lasts until reboot).
    None,
}

impl Persist {
    /// Resolves `Auto` by looking at the host under `root`.
    pub fn resolve(self, root: &Path) -> Persist {
        if self != Persist::Auto {
            return self;
        }
        let netplan_yaml = std::fs::read_dir(root.join("etc/netplan"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == "yaml" || x == "yml"))
            })
            .unwrap_or(false);
        let netplan_installed = ["usr/sbin/netplan", "usr/bin/netplan", "sbin/netplan"]
            .iter()
            .any(|p| root.join(p).exists());
        if netplan_yaml && netplan_installed {
            Persist::Netplan
        } else {
            Persist::Networkd
        }
    }
}

/// The sysctl file the product description names.
pub const SYSCTL_FILE: &str = "etc/sysctl.d/99-dsr.conf";
/// Loads ipip at boot, which creates `tunl0`.
pub const MODULES_FILE: &str = "etc/modules-load.d/tula-ipip.conf";
pub const NETDEV_FILE: &str = "etc/systemd/network/90-tula-tunl0.netdev";
pub const NETWORK_FILE: &str = "etc/systemd/network/90-tula-tunl0.network";
pub const NETPLAN_FILE: &str = "etc/netplan/90-tula-dsr.yaml";
/// Loads ip6_tunnel at boot, which creates `ip6tnl0`.
pub const MODULES6_FILE: &str = "etc/modules-load.d/tula-ip6-tunnel.conf";
pub const NETDEV6_FILE: &str = "etc/systemd/network/90-tula-ip6tnl0.netdev";
pub const NETWORK6_FILE: &str = "etc/systemd/network/90-tula-ip6tnl0.network";
/// The IPv6 VIPs of the kernel method, on `lo`.
pub const LO_NETWORK_FILE: &str = "etc/systemd/network/90-tula-lo.network";
pub const UNIT_FILE: &str = "etc/systemd/system/tula-decap.service";
pub const UNIT_WANTS_LINK: &str = "etc/systemd/system/multi-user.target.wants/tula-decap.service";
/// The MSS clamp's table, for the kernel method (the XDP method's unit re-runs setup).
pub const NFT_FILE: &str = "etc/tula/dsr-mss-clamp.nft";
pub const MSS_UNIT_FILE: &str = "etc/systemd/system/tula-mss-clamp.service";
pub const MSS_UNIT_WANTS_LINK: &str = "etc/systemd/system/multi-user.target.wants/tula-mss-clamp.service";

/// `root` + a path relative to `/`.
pub fn under(root: &Path, relative: &str) -> PathBuf {
    root.join(relative)
}

/// The sysctl file: every `(key, value)` with the reason for each group.
pub fn sysctl_file(settings: &[(String, String)]) -> String {
    let mut out = String::from(
        "# Written by `tula decap setup` for Layer 3 DSR; `tula decap teardown` removes it.\n\
         # arp_ignore/arp_announce: never answer ARP for a VIP, nor use one as ARP source.\n\
         # rp_filter: decapsulated packets carry the client's address as source, which\n\
         # does not match the route back through the receiving interface.\n",
    );
    for (key, value) in settings {
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

/// The ipip module at boot.
pub fn modules_file() -> String {
    "# Written by `tula decap setup`: the ipip module creates tunl0, which decapsulates L3 DSR traffic.\nipip\n"
        .to_string()
}

/// systemd-networkd: the tunnel device. With the module loaded, the kernel has
/// already made `tunl0` (its catch-all IPIP device) and networkd uses it as it
/// is; otherwise networkd creates it with this local address.
pub fn networkd_netdev(local: Ipv4Addr) -> String {
    format!(
        "# Written by `tula decap setup`: IPIP tunnel for Layer 3 DSR.\n\
         [NetDev]\n\
         Name=tunl0\n\
         Kind=ipip\n\
         \n\
         [Tunnel]\n\
         Local={local}\n\
         Remote=any\n\
         Independent=yes\n"
    )
}

/// systemd-networkd: the VIPs on `tunl0`, and the link up without waiting for it at boot.
pub fn networkd_network(vips: &[Ipv4Addr]) -> String {
    let addresses: Vec<String> = vips.iter().map(|vip| format!("{vip}/32")).collect();
    tunnel_network("the VIPs this backend serves over the IPIP tunnel.", "tunl0", &addresses)
}

/// A tunnel's .network file: up without waiting for it at boot, with `addresses`.
fn tunnel_network(what: &str, name: &str, addresses: &[String]) -> String {
    let mut out = format!(
        "# Written by `tula decap setup`: {what}\n\
         [Match]\n\
         Name={name}\n\
         \n\
         [Link]\n\
         RequiredForOnline=no\n\
         \n\
         [Network]\n\
         LinkLocalAddressing=no\n\
         ConfigureWithoutCarrier=yes\n",
    );
    for address in addresses {
        out.push_str(&format!("Address={address}\n"));
    }
    out
}

/// The ip6_tunnel module at boot.
pub fn modules6_file() -> String {
    "# Written by `tula decap setup`: the ip6_tunnel module creates ip6tnl0, which decapsulates IP6IP6 and \
     IPv4-in-IPv6 L3 DSR traffic.\nip6_tunnel\n"
        .to_string()
}

/// systemd-networkd: the IPv6 tunnel device, as [`networkd_netdev`] for `tunl0`.
pub fn networkd_netdev6(local: Ipv6Addr) -> String {
    format!(
        "# Written by `tula decap setup`: IPv6 tunnel (IP6IP6 and IPv4 in IPv6) for Layer 3 DSR.\n\
         [NetDev]\n\
         Name=ip6tnl0\n\
         Kind=ip6tnl\n\
         \n\
         [Tunnel]\n\
         Mode=any\n\
         Local={local}\n\
         Remote=any\n\
         Independent=yes\n"
    )
}

/// systemd-networkd: `ip6tnl0` up, without addresses (the IPv6 VIPs are on `lo`).
pub fn networkd_network6() -> String {
    tunnel_network("the IPv6 tunnel up; the IPv6 VIPs are on lo.", "ip6tnl0", &[])
}

/// systemd-networkd: the IPv6 VIPs on `lo`.
pub fn networkd_lo_network(vips: &[Ipv6Addr]) -> String {
    let mut out = String::from(
        "# Written by `tula decap setup`: the IPv6 VIPs this backend serves, on lo.\n\
         [Match]\n\
         Name=lo\n\
         \n\
         [Link]\n\
         RequiredForOnline=no\n\
         \n\
         [Network]\n",
    );
    for vip in vips {
        out.push_str(&format!("Address={vip}/128\n"));
    }
    out
}

/// netplan: `tunl0` with the IPv4 VIPs, `ip6tnl0`, and the IPv6 VIPs on `lo`.
/// netplan wants a remote: 0.0.0.0 and :: are "any". It has no mode any:
/// ip6ip6 (the kernel's own ip6tnl0, when the module made it, stays any).
pub fn netplan_yaml(tunnel4: Option<(Ipv4Addr, &[Ipv4Addr])>, tunnel6: Option<(Ipv6Addr, &[Ipv6Addr])>) -> String {
    let mut out = String::from(match tunnel4 {
        Some(_) => "# Written by `tula decap setup`: IPIP tunnel and VIPs for Layer 3 DSR.\n",
        None => "# Written by `tula decap setup`: IPv6 tunnel and VIPs for Layer 3 DSR.\n",
    });
    out.push_str("network:\n  version: 2\n  tunnels:\n");
    if let Some((local, vips)) = tunnel4 {
        out.push_str(&format!(
            "    tunl0:\n      mode: ipip\n      local: {local}\n      remote: 0.0.0.0\n      addresses:\n"
        ));
        for vip in vips {
            out.push_str(&format!("        - {vip}/32\n"));
        }
    }
    if let Some((local, vips)) = tunnel6 {
        out.push_str(&format!("    ip6tnl0:\n      mode: ip6ip6\n      local: \"{local}\"\n      remote: \"::\"\n"));
        out.push_str("  ethernets:\n    lo:\n      match:\n        name: lo\n      addresses:\n");
        for vip in vips {
            out.push_str(&format!("        - \"{vip}/128\"\n"));
        }
    }
    out
}

/// The boot unit of the XDP method: bpffs pins and addresses on `lo` do not
/// survive a reboot, so it runs the same setup again once the network is up.
pub fn systemd_unit(
    tula_binary: &Path,
    interface: &str,
    vips: &[IpAddr],
    mss_clamp: Option<u16>,
    mss_clamp6: Option<u16>,
) -> String {
    let mut vip_args: String = vips.iter().map(|v| format!(" --vip {v}")).collect();
    if let Some(mss) = mss_clamp {
        vip_args.push_str(&format!(" --mss-clamp={mss}"));
    }
    if let Some(mss) = mss_clamp6 {
        vip_args.push_str(&format!(" --mss-clamp6={mss}"));
    }
    format!(
        "# Written by `tula decap setup --method xdp`; `tula decap teardown` removes it.\n\
         [Unit]\n\
         Description=tula: decapsulate Layer 3 DSR traffic (IPIP) in XDP on {interface}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={} decap setup --method xdp --interface {interface}{vip_args}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        tula_binary.display()
    )
}

/// The MSS clamp's table as a file for `nft -f`: replaces the table it names, nothing else.
/// The MSS clamp's tables as a file for `nft -f`: replaces the tables it names
/// (`ip` for the IPv4 VIPs, `ip6` for the IPv6 ones), nothing else.
pub fn nft_file(clamp4: Option<(&[Ipv4Addr], u16)>, clamp6: Option<(&[Ipv6Addr], u16)>) -> String {
    let mut out = String::from(
        "#!/usr/sbin/nft -f\n\
         # Written by `tula decap setup --mss-clamp`; `tula decap teardown` removes it.\n",
    );
    if let Some((vips, mss)) = clamp4 {
        out.push_str("# Clamps the TCP MSS of SYN and SYN-ACK sent from the VIPs to what fits the IPIP tunnel.\n");
        out.push_str(&crate::mss_clamp::script(vips, mss));
    }
    if let Some((vips, mss)) = clamp6 {
        out.push_str("# Clamps the TCP MSS of SYN and SYN-ACK sent from the IPv6 VIPs to what fits IP6IP6.\n");
        out.push_str(&crate::mss_clamp::script6(vips, mss));
    }
    out
}

/// Loads the MSS clamp's tables at boot (kernel method): `ip`, `ip6` or both.
pub fn mss_clamp_unit(families: &[crate::mss_clamp::Family]) -> String {
    let table = crate::mss_clamp::TABLE;
    let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
    let tables = match names.as_slice() {
        [one] => format!("table {one} {table}"),
        many => format!("tables {} {table}", many.join(" and ")),
    };
    let stops: String = names.iter().map(|name| format!("ExecStop=/usr/sbin/nft delete table {name} {table}\n")).collect();
    format!(
        "# Written by `tula decap setup --mss-clamp`; `tula decap teardown` removes it.\n\
         [Unit]\n\
         Description=tula: clamp the TCP MSS of SYN-ACKs from the VIPs (nftables {tables})\n\
         Before=network-pre.target\n\
         Wants=network-pre.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart=/usr/sbin/nft -f /{NFT_FILE}\n\
         {stops}\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// The value a sysctl file sets for `key`, if it sets it (last one wins).
pub fn sysctl_file_value(contents: &str, key: &str) -> Option<String> {
    contents
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.trim_start_matches('-').split_once('='))
        .find(|(k, _)| k.trim().replace('/', ".") == key)
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_file_round_trips_through_its_parser() {
        let settings = vec![
            ("net.ipv4.conf.all.arp_ignore".to_string(), "1".to_string()),
            ("net.ipv4.conf.all.rp_filter".to_string(), "0".to_string()),
        ];
        let file = sysctl_file(&settings);
        assert_eq!(sysctl_file_value(&file, "net.ipv4.conf.all.arp_ignore").as_deref(), Some("1"));
        assert_eq!(sysctl_file_value(&file, "net.ipv4.conf.all.rp_filter").as_deref(), Some("0"));
        assert_eq!(sysctl_file_value(&file, "net.ipv4.conf.all.arp_announce"), None);
        // A later line overrides an earlier one, as sysctl(8) applies them.
        let edited = format!("{file}net.ipv4.conf.all.rp_filter=1\n");
        assert_eq!(sysctl_file_value(&edited, "net.ipv4.conf.all.rp_filter").as_deref(), Some("1"));
    }

    #[test]
    fn auto_picks_netplan_only_when_it_is_in_use() {
        let root = std::env::temp_dir().join(format!("tula-decap-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/netplan")).unwrap();
        assert_eq!(Persist::Auto.resolve(&root), Persist::Networkd, "no netplan files, no binary");
        std::fs::write(root.join("etc/netplan/50-cloud-init.yaml"), "network: {}\n").unwrap();
        assert_eq!(Persist::Auto.resolve(&root), Persist::Networkd, "files but no netplan binary");
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::write(root.join("usr/sbin/netplan"), "").unwrap();
        assert_eq!(Persist::Auto.resolve(&root), Persist::Netplan);
        assert_eq!(Persist::None.resolve(&root), Persist::None, "an explicit choice stays");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
