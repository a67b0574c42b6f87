//! BIRD 2 configs: a node's (learn the announcement table, export it to the
//! peers by BGP) and a router's (learn the nodes' routes by BGP, install
//! them as one ECMP route per VIP), as `tula bgp config` and the lab write them.

use std::fmt::Write;
use std::net::Ipv4Addr;

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
    /// The routers to announce to, all in `peer_asn`.
    pub peers: Vec<Ipv4Addr>,
    pub peer_asn: u32,
    /// The node's own address toward the peers: the router id, and the only
    /// address BIRD listens on. BIRD picks one itself if absent.
    pub local: Option<Ipv4Addr>,
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
            "# tula keeps one /32 route per VIP this node can serve in kernel table {table},\n\
             # out of its TUN device; BIRD learns them here. The routes, and so the\n\
             # announcements, go away when tula withdraws a VIP or is gone past its grace.\n\
             protocol kernel tula_vips {{\n    ipv4 {{\n        import all;\n        export none;\n    }};\n    kernel table {table};\n    learn;\n    scan time 1;\n}}\n",
            table = self.table
        );
        self.timers.bfd_protocol(&mut out);
        for (i, peer) in self.peers.iter().enumerate() {
            let _ = writeln!(out, "protocol bgp uplink{} {{", i + 1);
            match self.local {
                Some(local) => {
                    let _ = writeln!(out, "    local {local} as {};\n    strict bind yes;", self.asn);
                }
                None => {
                    let _ = writeln!(out, "    local as {};", self.asn);
                }
            }
            let _ = writeln!(out, "    neighbor {peer} as {};", self.peer_asn);
            self.timers.session_lines(&mut out);
            out.push_str("    ipv4 {\n        import none;\n        export where proto = \"tula_vips\" && net.len = 32;\n        next hop self;\n    };\n}\n\n");
        }
        Ok(out)
    }
}

/// A router (the lab's) that spreads each VIP over the nodes announcing it.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// (the router's address toward the node, the node's address)
    pub nodes: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub node_asn: u32,
    /// Only routes inside this prefix are accepted from the nodes.
    pub vip_prefix: (Ipv4Addr, u8),
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
        out.push_str(
            "# Every node's route for a VIP goes into the kernel as one multipath route.\n\
             protocol kernel {\n    ipv4 {\n        import none;\n        export all;\n    };\n    merge paths on;\n}\n\n",
        );
        self.timers.bfd_protocol(&mut out);
        let (prefix, len) = self.vip_prefix;
        for (i, (local, node)) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                out,
                "protocol bgp node{} {{\n    local {local} as {};\n    strict bind yes;\n    neighbor {node} as {};",
                i + 1,
                self.asn,
                self.node_asn
            );
            self.timers.session_lines(&mut out);
            let _ = writeln!(
                out,
                "    ipv4 {{\n        import where net ~ [ {prefix}/{len}{{32,32}} ];\n        export none;\n    }};\n}}\n"
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
            peers: vec![Ipv4Addr::new(198, 18, 1, 1)],
            peer_asn: 65000,
            local: Some(Ipv4Addr::new(198, 18, 1, 2)),
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
                (Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 1, 2)),
                (Ipv4Addr::new(198, 18, 2, 1), Ipv4Addr::new(198, 18, 2, 2)),
            ],
            node_asn: 65001,
            vip_prefix: (Ipv4Addr::new(203, 0, 113, 0), 24),
            timers: Timers { bfd: true, ..Timers::default() },
            log: Some("/tmp/x.log".into()),
        };
        let text = router.render().unwrap();
        assert!(text.contains("merge paths on;"), "{text}");
        assert!(text.contains("protocol bgp node2 {\n    local 198.18.2.1 as 65000;"), "{text}");
        assert!(text.contains("import where net ~ [ 203.0.113.0/24{32,32} ];"), "{text}");
        assert!(text.contains("protocol bfd {") && text.contains("bfd on;"), "{text}");
    }
}
