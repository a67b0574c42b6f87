//! `--mss-clamp`: an nftables table of tula's own, `table ip tula_dsr`, whose
//! one rule lowers the MSS option of SYN and SYN-ACK segments sent from a VIP
//! to what fits the tunnel. A backend's SYN-ACK advertises an MSS from its own
//! uplink MTU; behind IPIP a client's full-size segments are 20 bytes too big
//! for the path, so the backend offers less. Only this table is ever written,
//! replaced or deleted: other tables and rules are never touched.
//!
//! Done with the `nft` command (package nftables): `nft -f -` replaces the
//! table in one transaction, `nft -j list table` reads it back for verify.

use crate::DecapError;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// tula's table, in the `ip` family.
pub const TABLE: &str = "tula_dsr";
/// Its one chain.
pub const CHAIN: &str = "mss_clamp";
/// IPIP's outer header: what the tunnel takes off the uplink's MTU.
pub const IPIP_OVERHEAD: u32 = 20;
/// IPv4 and TCP headers without options: what an MSS leaves out of an MTU.
pub const IPV4_TCP_HEADERS: u32 = 40;
/// Smallest MSS accepted (RFC 879's default MSS).
pub const MIN_MSS: u16 = 536;

/// The MSS that fits a tunnel over an uplink with MTU `uplink_mtu`:
/// tunnel MTU (uplink MTU - 20) - 40.
pub fn default_mss(uplink_mtu: u32) -> u16 {
    uplink_mtu
        .saturating_sub(IPIP_OVERHEAD + IPV4_TCP_HEADERS)
        .clamp(MIN_MSS.into(), u16::MAX.into()) as u16
}

/// The table as `nft list table ip tula_dsr` prints it, which is also what is loaded.
pub fn ruleset(vips: &[Ipv4Addr], mss: u16) -> String {
    let sources = match vips {
        [one] => one.to_string(),
        many => format!("{{ {} }}", many.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")),
    };
    format!(
        "table ip {TABLE} {{\n\
         \tchain {CHAIN} {{\n\
         \t\ttype filter hook output priority mangle; policy accept;\n\
         \t\tip saddr {sources} tcp flags syn / syn,rst tcp option maxseg size > {mss} tcp option maxseg size set {mss} comment \"tula decap setup --mss-clamp\"\n\
         \t}}\n\
         }}\n"
    )
}

/// Loads the table, replacing an earlier one of the same name in the same transaction.
pub fn install(vips: &[Ipv4Addr], mss: u16) -> Result<(), DecapError> {
    nft(&["-f", "-"], Some(&script(vips, mss)), &format!("loading nftables table ip {TABLE}")).map(|_| ())
}

/// What `nft -f` loads: the table, replacing an earlier one of the same name.
pub fn script(vips: &[Ipv4Addr], mss: u16) -> String {
    // Declaring the table first makes the delete succeed whether or not it exists.
    format!("table ip {TABLE}\ndelete table ip {TABLE}\n{}", ruleset(vips, mss))
}

/// Deletes the table. `Ok(false)`: it was not there.
pub fn remove() -> Result<bool, DecapError> {
    if read()?.is_none() {
        return Ok(false);
    }
    nft(&["delete", "table", "ip", TABLE], None, &format!("deleting nftables table ip {TABLE}"))?;
    Ok(true)
}

/// What tula's table clamps now, as read back from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// Source addresses the rule matches.
    pub vips: Vec<Ipv4Addr>,
    /// The MSS it sets, if a rule sets one.
    pub mss: Option<u16>,
    /// The chain hooks output (where the backend's SYN-ACKs pass).
    pub output_hook: bool,
    /// The rule matches SYN (with or without ACK) only.
    pub syn_only: bool,
}

impl Installed {
    /// Whether it clamps every one of `vips` to `mss`.
    pub fn clamps(&self, vips: &[Ipv4Addr], mss: u16) -> bool {
        self.output_hook && self.syn_only && self.mss == Some(mss) && vips.iter().all(|v| self.vips.contains(v))
    }
}

/// The table as the kernel holds it, or `None` if there is none.
pub fn read() -> Result<Option<Installed>, DecapError> {
    let what = format!("reading nftables table ip {TABLE}");
    let output = run_nft(&["-j", "list", "table", "ip", TABLE], None, &what)?;
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
            if left["payload"]["protocol"] == "ip" && left["payload"]["field"] == "saddr" {
                let right = &matched["right"];
                let addrs: Vec<&serde_json::Value> = match right["set"].as_array() {
                    Some(set) => set.iter().collect(),
                    None => vec![right],
                };
                installed.vips.extend(addrs.iter().filter_map(|a| a.as_str()?.parse::<Ipv4Addr>().ok()));
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
        assert_eq!(installed, Installed { vips: vips.to_vec(), mss: Some(1400), output_hook: true, syn_only: true });
        assert!(installed.clamps(&vips, 1400));
        assert!(!installed.clamps(&vips, 1440));
        assert!(!installed.clamps(&[Ipv4Addr::new(203, 0, 113, 30)], 1400));
    }
}
