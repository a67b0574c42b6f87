//! BIRD 2 configs: a node's (learn the announcement table, export it to the
//! peers by BGP) and a router's (learn the nodes' routes by BGP, install
//! them as one ECMP route per VIP), as `tula bgp config` and the lab write them.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::BgpError;

/// BGP timers both sides of a session use. Hold 3 s, keepalive 1 s: a node
/// that goes silent is withdrawn within 3 s (docs/CLUSTER.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub hold: u16,
    pub keepalive: u16,
    /// BFD at 100 ms x 3 as well: a silent peer is noticed in 0.3 s.
    pub bfd: bool,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers { hold: 3, keepalive: 1, bfd: false }
    }
}

impl Timers {
    fn validate(&self) -> Result<(), BgpError> {
        if self.hold < 3 {
            return Err(BgpError::Invalid(format!("hold time {} s is below BGP's minimum of 3 s", self.hold)));
        }
        if self.keepalive == 0 || u32::from(self.keepalive) * 3 > u32::from(self.hold) {
            return Err(BgpError::Invalid(format!(
                "keepalive time {} s must be between 1 s and a third of the hold time ({} s)",
                self.keepalive, self.hold
            )));
        }
        Ok(())
    }

    fn session_lines(&self, out: &mut String) {
        let _ = writeln!(out, "    hold time {};\n    keepalive time {};", self.hold, self.keepalive);
        // Reconnect fast after a node returns.
        out.push_str("    connect delay time 1;\n    connect retry time 1;\n    error wait time 1, 5;\n");
        if self.bfd {
            out.push_str("    bfd on;\n");
        }
    }

    fn bfd_protocol(&self, out: &mut String) {
        if self.bfd {
            out.push_str("protocol bfd {\n    interface \"*\" {\n        min rx interval 100 ms;\n        min tx interval 100 ms;\n        multiplier 3;\n    };\n}\n\n");
        }
    }
}

/// A tula node's BIRD.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub asn: u32,
    /// The routers to announce to, all in `peer_asn`: an IPv4 peer gets the
    /// IPv4 VIPs' /32 routes, an IPv6 peer the IPv6 VIPs' /128 routes.
    pub peers: Vec<IpAddr>,
    pub peer_asn: u32,
    /// The node's own address toward the peers: the router id, and the only
    /// address BIRD listens on. BIRD picks one itself if absent.
    pub local: Option<Ipv4Addr>,
    /// The node's own IPv6 address toward IPv6 peers (BIRD picks one if absent).
    pub local6: Option<Ipv6Addr>,
    /// The table tula keeps the announced routes in (`tula serve --bgp-table`).
    pub table: u32,
    pub timers: Timers,
    /// Where BIRD logs: a file, "stderr", or syslog if absent.
    pub log: Option<String>,
}

fn check_asn(what: &str, asn: u32) -> Result<(), BgpError> {
    // 23456 is AS_TRANS, a placeholder in 2-byte AS paths.
    if asn == 0 || asn == 23456 {
        return Err(BgpError::Invalid(format!("{what} {asn} is not a usable AS number")));
    }
    Ok(())
}

/// BIRD's channel name, the node's kernel protocol and the host prefix length of `address`'s family.
fn family_of(address: IpAddr) -> (&'static str, &'static str, u8) {
    match address {
        IpAddr::V4(_) => ("ipv4", "tula_vips", 32),
        IpAddr::V6(_) => ("ipv6", "tula_vips6", 128),
    }
}

fn header(out: &mut String, what: &str, router_id: Option<Ipv4Addr>, log: &Option<String>) {
    let _ = writeln!(out, "# BIRD 2 config for {what}, written by tula (docs/CLUSTER.md).");
    match log {
        Some(path) if path == "stderr" => out.push_str("log stderr all;\n"),
        Some(path) => {
            let _ = writeln!(out, "log \"{path}\" all;");
        }
        None => out.push_str("log syslog all;\n"),
    }
    if let Some(id) = router_id {
        let _ = writeln!(out, "router id {id};");
    }
    out.push_str("\nprotocol device {\n}\n\n");
}

impl NodeConfig {
    pub fn render(&self) -> Result<String, BgpError> {
        check_asn("--asn", self.asn)?;
        check_asn("--peer-asn", self.peer_asn)?;
        self.timers.validate()?;
        if self.peers.is_empty() {
            return Err(BgpError::Invalid("name at least one --peer (a router to announce the VIPs to)".into()));
        }
        if self.table == 0 || self.table == 253 || self.table == 254 || self.table == 255 {
            return Err(BgpError::Invalid(format!(
                "table {} is one of the kernel's own (default, main, local); use a table of tula's own, e.g. 4242",
                self.table
            )));
        }
        let mut out = String::new();
        header(&mut out, "a tula node", self.local, &self.log);
        let _ = writeln!(
            out,
            "# tula keeps one host route per VIP this node can serve (/32 IPv4, /128 IPv6)\n\
             # in kernel table {table}, out of its TUN device; BIRD learns them here. The\n\
             # routes, and so the announcements, go away when tula withdraws a VIP or is gone\n\
             # past its grace.\n\
             protocol kernel tula_vips {{\n    ipv4 {{\n        import all;\n        export none;\n    }};\n    kernel table {table};\n    learn;\n    scan time 1;\n}}\n\n\
             protocol kernel tula_vips6 {{\n    ipv6 {{\n        import all;\n        export none;\n    }};\n    kernel table {table};\n    learn;\n    scan time 1;\n}}\n",
            table = self.table
        );
        self.timers.bfd_protocol(&mut out);
        for (i, peer) in self.peers.iter().enumerate() {
            let _ = writeln!(out, "protocol bgp uplink{} {{", i + 1);
            let local = match peer {
                IpAddr::V4(_) => self.local.map(IpAddr::V4),
                IpAddr::V6(_) => self.local6.map(IpAddr::V6),
            };
            match local {
                Some(local) => {
                    let _ = writeln!(out, "    local {local} as {};\n    strict bind yes;", self.asn);
                }
                None => {
                    let _ = writeln!(out, "    local as {};", self.asn);
                }
            }
            let _ = writeln!(out, "    neighbor {peer} as {};", self.peer_asn);
            self.timers.session_lines(&mut out);
            let (family, kernel, host) = family_of(*peer);
            let _ = writeln!(
                out,
                "    {family} {{\n        import none;\n        export where proto = \"{kernel}\" && net.len = {host};\n        next hop self;\n    }};\n}}\n"
            );
        }
        Ok(out)
    }
}

/// A router (the lab's) that spreads each VIP over the nodes announcing it.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// (the router's address toward the node, the node's address): one
    /// session each, IPv4 or IPv6 (a dual-stack node has one of each).
    pub nodes: Vec<(IpAddr, IpAddr)>,
    pub node_asn: u32,
    /// Only routes inside this prefix are accepted from the nodes' IPv4 sessions.
    pub vip_prefix: (Ipv4Addr, u8),
    /// And inside this one from their IPv6 sessions.
    pub vip_prefix6: Option<(Ipv6Addr, u8)>,
    pub timers: Timers,
    pub log: Option<String>,
}

impl RouterConfig {
    pub fn render(&self) -> Result<String, BgpError> {
        check_asn("router AS", self.asn)?;
        check_asn("node AS", self.node_asn)?;
        self.timers.validate()?;
        let mut out = String::new();
        header(&mut out, "a router doing ECMP over tula nodes", Some(self.router_id), &self.log);
        out.push_str("# Every node's route for a VIP goes into the kernel as one multipath route.\n");
        out.push_str("protocol kernel {\n    ipv4 {\n        import none;\n        export all;\n    };\n    merge paths on;\n}\n\n");
        if self.nodes.iter().any(|(_, node)| node.is_ipv6()) {
            out.push_str("protocol kernel {\n    ipv6 {\n        import none;\n        export all;\n    };\n    merge paths on;\n}\n\n");
        }
        self.timers.bfd_protocol(&mut out);
        for (i, (local, node)) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                out,
                "protocol bgp node{} {{\n    local {local} as {};\n    strict bind yes;\n    neighbor {node} as {};",
                i + 1,
                self.asn,
                self.node_asn
            );
            self.timers.session_lines(&mut out);
            let (family, _, host) = family_of(*node);
            let prefix = match node {
                IpAddr::V4(_) => format!("{}/{}", self.vip_prefix.0, self.vip_prefix.1),
                IpAddr::V6(_) => match self.vip_prefix6 {
                    Some((prefix, len)) => format!("{prefix}/{len}"),
                    None => {
                        return Err(BgpError::Invalid(format!(
                            "node {node} is an IPv6 session but no IPv6 VIP prefix was given"
                        )))
                    }
                },
            };
            let _ = writeln!(
                out,
                "    {family} {{\n        import where net ~ [ {prefix}{{{host},{host}}} ];\n        export none;\n    }};\n}}\n"
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeConfig {
        NodeConfig {
            asn: 65001,
            peers: vec![IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1))],
            peer_asn: 65000,
            local: Some(Ipv4Addr::new(198, 18, 1, 2)),
            local6: None,
            table: 4242,
            timers: Timers::default(),
            log: None,
        }
    }

    #[test]
    fn node_config_learns_the_table_and_exports_only_it() {
        let text = node().render().unwrap();
        assert!(text.contains("kernel table 4242;\n    learn;"), "{text}");
        assert!(text.contains("local 198.18.1.2 as 65001;"), "{text}");
        assert!(text.contains("neighbor 198.18.1.1 as 65000;"), "{text}");
        assert!(text.contains("export where proto = \"tula_vips\" && net.len = 32;"), "{text}");
        assert!(text.contains("hold time 3;"), "{text}");
        assert!(!text.contains("bfd"), "{text}");
    }

    #[test]
    fn bad_node_settings_are_named() {
        let cases: [(fn(&mut NodeConfig), &str); 5] = [
            (|c| c.asn = 0, "--asn 0"),
            (|c| c.peers.clear(), "--peer"),
            (|c| c.table = 254, "table 254"),
            (|c| c.timers.hold = 2, "hold time 2"),
            (|c| c.timers.keepalive = 2, "keepalive time 2"),
        ];
        for (change, expected) in cases {
            let mut config = node();
            change(&mut config);
            let error = config.render().unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should name {expected:?}");
        }
    }

    #[test]
    fn router_config_merges_paths_and_accepts_only_vip_host_routes() {
        let router = RouterConfig {
            asn: 65000,
            router_id: Ipv4Addr::new(198, 18, 1, 1),
            nodes: vec![
                ("198.18.1.1".parse().unwrap(), "198.18.1.2".parse().unwrap()),
                ("198.18.2.1".parse().unwrap(), "198.18.2.2".parse().unwrap()),
            ],
            node_asn: 65001,
            vip_prefix: (Ipv4Addr::new(203, 0, 113, 0), 24),
            vip_prefix6: None,
            timers: Timers { bfd: true, ..Timers::default() },
            log: Some("/tmp/x.log".into()),
        };
        let text = router.render().unwrap();
        assert!(text.contains("merge paths on;"), "{text}");
        assert!(text.contains("protocol bgp node2 {\n    local 198.18.2.1 as 65000;"), "{text}");
        assert!(text.contains("import where net ~ [ 203.0.113.0/24{32,32} ];"), "{text}");
        assert!(text.contains("protocol bfd {") && text.contains("bfd on;"), "{text}");
        assert!(!text.contains("ipv6"), "no IPv6 session, no IPv6 kernel protocol: {text}");
    }

    #[test]
    fn an_ipv6_peer_gets_the_ipv6_vips_host_routes_over_its_own_session() {
        let mut config = node();
        config.peers.push("2001:db8:1::1".parse().unwrap());
        config.local6 = Some("2001:db8:1::2".parse().unwrap());
        let text = config.render().unwrap();
        assert!(text.contains("protocol kernel tula_vips6 {\n    ipv6 {"), "{text}");
        let v6 = &text[text.find("protocol bgp uplink2").expect("a second session")..];
        assert!(v6.contains("local 2001:db8:1::2 as 65001;"), "{v6}");
        assert!(v6.contains("neighbor 2001:db8:1::1 as 65000;"), "{v6}");
        assert!(v6.contains("ipv6 {\n        import none;\n        export where proto = \"tula_vips6\" && net.len = 128;"), "{v6}");
        let v4 = &text[text.find("protocol bgp uplink1").unwrap()..text.find("protocol bgp uplink2").unwrap()];
        assert!(v4.contains("export where proto = \"tula_vips\" && net.len = 32;") && !v4.contains("ipv6"), "{v4}");
    }

    #[test]
    fn a_router_takes_ipv6_vip_host_routes_from_ipv6_sessions_only_inside_the_prefix() {
        let mut router = RouterConfig {
            asn: 65000,
            router_id: Ipv4Addr::new(198, 18, 1, 1),
            nodes: vec![("2001:db8:1::1".parse().unwrap(), "2001:db8:1::2".parse().unwrap())],
            node_asn: 65001,
            vip_prefix: (Ipv4Addr::new(203, 0, 113, 0), 24),
            vip_prefix6: None,
            timers: Timers::default(),
            log: None,
        };
        let error = router.render().unwrap_err().to_string();
        assert!(error.contains("2001:db8:1::2") && error.contains("IPv6 VIP prefix"), "{error}");
        router.vip_prefix6 = Some(("2001:db8:113::".parse().unwrap(), 64));
        let text = router.render().unwrap();
        assert!(text.contains("protocol kernel {\n    ipv6 {"), "{text}");
        assert!(text.contains("ipv6 {\n        import where net ~ [ 2001:db8:113::/64{128,128} ];"), "{text}");
    }
}
