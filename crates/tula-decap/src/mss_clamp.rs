//! `--mss-clamp`: an nftables table of tula's own, `table ip tula_dsr`, whose
//! one rule lowers the MSS option of SYN and SYN-ACK segments sent from a VIP
//! to what fits the tunnel. A backend's SYN-ACK advertises an MSS from its own
//! uplink MTU; behind IPIP a client's full-size segments are 20 bytes too big
//! for the path, so the backend offers less. Only this table is ever written,
//! replaced or deleted: other tables and rules are never touched.
//!
//! IPv6 VIPs get the same table in the `ip6` family (`table ip6 tula_dsr`,
//! `--mss-clamp6`): behind IP6IP6 the outer header takes 40 bytes, and IPv6
//! and TCP headers 60, so a 1500-byte uplink leaves an MSS of 1400.
//!
//! Done with the `nft` command (package nftables): `nft -f -` replaces the
//! table in one transaction, `nft -j list table` reads it back for verify.

use crate::DecapError;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

/// tula's table, in the `ip` family and (for IPv6 VIPs) the `ip6` family.
pub const TABLE: &str = "tula_dsr";
/// Its one chain.
pub const CHAIN: &str = "mss_clamp";
/// IPIP's outer header: what the tunnel takes off the uplink's MTU.
pub const IPIP_OVERHEAD: u32 = 20;
/// IPv4 and TCP headers without options: what an MSS leaves out of an MTU.
pub const IPV4_TCP_HEADERS: u32 = 40;
/// IP6IP6's outer header.
pub const IP6IP6_OVERHEAD: u32 = 40;
/// IPv6 and TCP headers without options.
pub const IPV6_TCP_HEADERS: u32 = 60;
/// Smallest MSS accepted (RFC 879's default MSS).
pub const MIN_MSS: u16 = 536;
/// Smallest IPv6 MSS accepted: what IPv6's minimum MTU (1280) leaves.
pub const MIN_MSS6: u16 = 1220;

/// The nftables family of a table: `ip` for IPv4 VIPs, `ip6` for IPv6 VIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ip,
    Ip6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    /// The setup flag that asks for this family's clamp.
    pub fn flag(self) -> &'static str {
        match self {
            Family::Ip => "--mss-clamp",
            Family::Ip6 => "--mss-clamp6",
        }
    }
}

/// The MSS that fits a tunnel over an uplink with MTU `uplink_mtu`:
/// tunnel MTU (uplink MTU - 20) - 40.
pub fn default_mss(uplink_mtu: u32) -> u16 {
    fit(uplink_mtu, IPIP_OVERHEAD + IPV4_TCP_HEADERS, MIN_MSS)
}

/// The MSS for IPv4 VIPs that may arrive in IPv6 (IPv4 in IPv6): uplink MTU - 40 - 40.
pub fn default_mss_in_ipv6(uplink_mtu: u32) -> u16 {
    fit(uplink_mtu, IP6IP6_OVERHEAD + IPV4_TCP_HEADERS, MIN_MSS)
}

/// The MSS for IPv6 VIPs behind IP6IP6: uplink MTU - 40 - 60.
pub fn default_mss6(uplink_mtu: u32) -> u16 {
    fit(uplink_mtu, IP6IP6_OVERHEAD + IPV6_TCP_HEADERS, MIN_MSS6)
}

fn fit(mtu: u32, overhead: u32, min: u16) -> u16 {
    mtu.saturating_sub(overhead).clamp(min.into(), u16::MAX.into()) as u16
}

/// The table as `nft list table ip tula_dsr` prints it, which is also what is loaded.
pub fn ruleset(vips: &[Ipv4Addr], mss: u16) -> String {
    ruleset_of(Family::Ip, &vips.iter().map(|v| v.to_string()).collect::<Vec<_>>(), mss)
}

/// The IPv6 table as `nft list table ip6 tula_dsr` prints it.
pub fn ruleset6(vips: &[Ipv6Addr], mss: u16) -> String {
    ruleset_of(Family::Ip6, &vips.iter().map(|v| v.to_string()).collect::<Vec<_>>(), mss)
}

fn ruleset_of(family: Family, vips: &[String], mss: u16) -> String {
    let (name, flag) = (family.name(), family.flag());
    let sources = match vips {
        [one] => one.clone(),
        many => format!("{{ {} }}", many.join(", ")),
    };
    format!(
        "table {name} {TABLE} {{\n\
         \tchain {CHAIN} {{\n\
         \t\ttype filter hook output priority mangle; policy accept;\n\
         \t\t{name} saddr {sources} tcp flags syn / syn,rst tcp option maxseg size > {mss} tcp option maxseg size set {mss} comment \"tula decap setup {flag}\"\n\
         \t}}\n\
         }}\n"
    )
}

/// Loads the table, replacing an earlier one of the same name in the same transaction.
pub fn install(vips: &[Ipv4Addr], mss: u16) -> Result<(), DecapError> {
    load(Family::Ip, &script(vips, mss))
}

/// Loads the IPv6 table, as [`install`].
pub fn install6(vips: &[Ipv6Addr], mss: u16) -> Result<(), DecapError> {
    load(Family::Ip6, &script6(vips, mss))
}

fn load(family: Family, script: &str) -> Result<(), DecapError> {
    nft(&["-f", "-"], Some(script), &format!("loading nftables table {} {TABLE}", family.name())).map(|_| ())
}

/// What `nft -f` loads: the table, replacing an earlier one of the same name.
pub fn script(vips: &[Ipv4Addr], mss: u16) -> String {
    replacing(Family::Ip, ruleset(vips, mss))
}

/// The IPv6 table for `nft -f`, as [`script`].
pub fn script6(vips: &[Ipv6Addr], mss: u16) -> String {
    replacing(Family::Ip6, ruleset6(vips, mss))
}

fn replacing(family: Family, ruleset: String) -> String {
    // Declaring the table first makes the delete succeed whether or not it exists.
    let name = family.name();
    format!("table {name} {TABLE}\ndelete table {name} {TABLE}\n{ruleset}")
}

/// Deletes the table. `Ok(false)`: it was not there.
pub fn remove() -> Result<bool, DecapError> {
    remove_of(Family::Ip)
}

/// Deletes the IPv6 table, as [`remove`].
pub fn remove6() -> Result<bool, DecapError> {
    remove_of(Family::Ip6)
}

fn remove_of(family: Family) -> Result<bool, DecapError> {
    if read_of(family)?.is_none() {
        return Ok(false);
    }
    let name = family.name();
    nft(&["delete", "table", name, TABLE], None, &format!("deleting nftables table {name} {TABLE}"))?;
    Ok(true)
}

/// What tula's table clamps now, as read back from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// Source addresses the rule matches.
    pub vips: Vec<IpAddr>,
    /// The MSS it sets, if a rule sets one.
    pub mss: Option<u16>,
    /// The chain hooks output (where the backend's SYN-ACKs pass).
    pub output_hook: bool,
    /// The rule matches SYN (with or without ACK) only.
    pub syn_only: bool,
}

impl Installed {
    /// Whether it clamps every one of `vips` to `mss`.
    pub fn clamps(&self, vips: &[impl Into<IpAddr> + Copy], mss: u16) -> bool {
        self.output_hook && self.syn_only && self.mss == Some(mss) && vips.iter().all(|v| self.vips.contains(&(*v).into()))
    }
}

/// The table as the kernel holds it, or `None` if there is none.
pub fn read() -> Result<Option<Installed>, DecapError> {
    read_of(Family::Ip)
}

/// The IPv6 table as the kernel holds it, or `None` if there is none.
pub fn read6() -> Result<Option<Installed>, DecapError> {
    read_of(Family::Ip6)
}

/// The table of `family` as the kernel holds it.
pub fn read_of(family: Family) -> Result<Option<Installed>, DecapError> {
    let name = family.name();
    let what = format!("reading nftables table {name} {TABLE}");
    let output = run_nft(&["-j", "list", "table", name, TABLE], None, &what)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(DecapError::io(what, std::io::Error::other(stderr.trim().to_string())));
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| DecapError::io(what.clone(), std::io::Error::other(format!("nft printed no JSON: {e}"))))?;
    Ok(Some(parse(&json)))
}

/// Reads the parts that matter out of `nft -j list table`'s output; anything
/// it does not recognise simply does not count.
fn parse(json: &serde_json::Value) -> Installed {
    let mut installed = Installed::default();
    let objects = json["nftables"].as_array().cloned().unwrap_or_default();
    for object in &objects {
        let chain = &object["chain"];
        if chain["name"] == CHAIN && chain["hook"] == "output" && chain["type"] == "filter" {
            installed.output_hook = true;
        }
        let rule = &object["rule"];
        if rule["chain"] != CHAIN {
            continue;
        }
        for expr in rule["expr"].as_array().into_iter().flatten() {
            let matched = &expr["match"];
            let left = &matched["left"];
            if (left["payload"]["protocol"] == "ip" || left["payload"]["protocol"] == "ip6")
                && left["payload"]["field"] == "saddr"
            {
                let right = &matched["right"];
                let addrs: Vec<&serde_json::Value> = match right["set"].as_array() {
                    Some(set) => set.iter().collect(),
                    None => vec![right],
                };
                installed.vips.extend(addrs.iter().filter_map(|a| a.as_str()?.parse::<IpAddr>().ok()));
            }
            if left["&"][0]["payload"]["field"] == "flags" && matched["right"] == "syn" {
                installed.syn_only = true;
            }
            let mangle = &expr["mangle"];
            if mangle["key"]["tcp option"]["name"] == "maxseg" {
                installed.mss = mangle["value"].as_u64().and_then(|v| u16::try_from(v).ok());
            }
        }
    }
    installed.vips.sort();
    installed
}

fn nft(args: &[&str], stdin: Option<&str>, what: &str) -> Result<String, DecapError> {
    let output = run_nft(args, stdin, what)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(DecapError::io(what, std::io::Error::other(format!("nft {} failed: {stderr}", args.join(" ")))));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn run_nft(args: &[&str], stdin: Option<&str>, what: &str) -> Result<std::process::Output, DecapError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound { " (install the nftables package)" } else { "" };
            DecapError::io(format!("{what}: running nft{hint}"), e)
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| DecapError::io(format!("{what}: writing to nft"), e))?;
    }
    child.wait_with_output().map_err(|e| DecapError::io(format!("{what}: waiting for nft"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mss_leaves_room_for_the_outer_header() {
        assert_eq!(default_mss(1500), 1440);
        assert_eq!(default_mss(9000), 8940);
        assert_eq!(default_mss(500), MIN_MSS, "never below 536");
    }

    #[test]
    fn the_ipv6_defaults_leave_room_for_the_outer_ipv6_header() {
        assert_eq!(default_mss6(1500), 1400, "1500 - 40 - 40 - 20");
        assert_eq!(default_mss_in_ipv6(1500), 1420, "1500 - 40 - 20 - 20");
        assert_eq!(default_mss6(1300), MIN_MSS6, "never below what 1280 leaves");
    }

    #[test]
    fn the_ipv6_ruleset_is_the_same_table_in_the_ip6_family() {
        let vip6: Ipv6Addr = "2001:db8:cafe::10".parse().unwrap();
        let one = ruleset6(&[vip6], 1400);
        assert!(one.starts_with("table ip6 tula_dsr {\n"), "{one}");
        assert!(one.contains("ip6 saddr 2001:db8:cafe::10 tcp flags syn / syn,rst"), "{one}");
        assert!(one.contains("maxseg size set 1400 comment \"tula decap setup --mss-clamp6\""), "{one}");
        assert!(script6(&[vip6], 1400).starts_with("table ip6 tula_dsr\ndelete table ip6 tula_dsr\ntable ip6 tula_dsr {"));
    }

    #[test]
    fn the_ruleset_names_every_vip() {
        let one = ruleset(&[Ipv4Addr::new(203, 0, 113, 10)], 1440);
        assert!(one.contains("ip saddr 203.0.113.10 tcp flags syn / syn,rst"), "{one}");
        let two = ruleset(&[Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(203, 0, 113, 11)], 1400);
        assert!(two.contains("ip saddr { 203.0.113.10, 203.0.113.11 }"), "{two}");
        assert!(two.contains("tcp option maxseg size > 1400 tcp option maxseg size set 1400"), "{two}");
    }

    #[test]
    fn parse_reads_what_nft_prints() {
        // `nft -j list table ip tula_dsr` from nftables 1.0.6, for the ruleset above.
        let json: serde_json::Value = serde_json::from_str(r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "tula_dsr", "handle": 2}}, {"chain": {"family": "ip", "table": "tula_dsr", "name": "mss_clamp", "handle": 1, "type": "filter", "hook": "output", "prio": -150, "policy": "accept"}}, {"rule": {"family": "ip", "table": "tula_dsr", "chain": "mss_clamp", "handle": 3, "comment": "tula decap setup --mss-clamp", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"set": ["203.0.113.10", "203.0.113.20"]}}}, {"match": {"op": "==", "left": {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["syn", "rst"]]}, "right": "syn"}}, {"match": {"op": ">", "left": {"tcp option": {"name": "maxseg", "field": "size"}}, "right": 1400}}, {"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}}, "value": 1400}}]}}]}"#).unwrap();
        let installed = parse(&json);
        let vips = [Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(203, 0, 113, 20)];
        let listed = vips.iter().map(|&v| IpAddr::V4(v)).collect();
        assert_eq!(installed, Installed { vips: listed, mss: Some(1400), output_hook: true, syn_only: true });
        assert!(installed.clamps(&vips, 1400));
        assert!(!installed.clamps(&vips, 1440));
        assert!(!installed.clamps(&[Ipv4Addr::new(203, 0, 113, 30)], 1400));
    }
}
