//! What to probe for each (VIP, backend) pair, read from the config: the
//! probe, its schedule and its rise/fall counts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tula_config::{CheckType, Config, DsrType, StatusRange, Vip};

/// One (VIP, backend) pair to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub vip: String,
    pub address: IpAddr,
    pub check: CheckType,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Target {
    pub(crate) fn key(&self) -> (String, IpAddr) {
        (self.vip.clone(), self.address)
    }
}

/// What one probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Connect to the backend's own address.
    Tcp { addr: SocketAddr },
    /// GET over HTTP, or HTTPS when `tls` is set.
    Http(HttpProbe),
    /// Connect to the VIP through the DSR path to this backend.
    Tunnel(TunnelProbe),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpProbe {
    pub addr: SocketAddr,
    pub path: String,
    /// The Host header; also the name TLS sends and verifies when it is a DNS name.
    pub host: String,
    pub expect_status: StatusRange,
    pub expect_body: Option<String>,
    /// `Some(verify)` for https.
    pub tls: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TunnelProbe {
    /// IPv4 or IPv6; an IPv6 VIP has IPv6 backends (IP6IP6).
    pub vip: SocketAddr,
    /// IPv4 (IPIP) or IPv6 (IP6IP6, or IPv4 in IPv6 for an IPv4 VIP).
    pub backend: IpAddr,
    /// The config's tunnel_source when it is of the backend's family; `None`
    /// = the probe's own source address (IPv4), the kernel's source toward
    /// the backend (IPv6).
    pub tunnel_src: Option<IpAddr>,
    /// Layer 2 DSR: the probe is sent to the backend's MAC, not encapsulated.
    pub l2: bool,
}

/// Every (VIP, backend) pair `config` asks to check, in config order. VIPs
/// with `type = "none"` have none; every backend of the others has one,
/// draining and disabled ones included (so they come back with a known state).
pub(crate) fn targets(config: &Config) -> Vec<Target> {
    let mut targets = Vec::new();
    for vip in &config.vips {
        let check = &vip.health_check;
        let Some(port) = check.port_for(vip.port) else {
            continue; // validation requires a port; nothing to probe without one
        };
        for backend in &vip.backends {
            let probe = match probe(config, vip, backend.address, port) {
                Some(probe) => probe,
                None => continue,
            };
            targets.push(Target {
                vip: vip.name.clone(),
                address: backend.address,
                check: check.kind,
                probe,
                interval: check.interval,
                timeout: check.timeout,
                rise: check.rise.max(1),
                fall: check.fall.max(1),
            });
        }
    }
    targets
}

fn probe(config: &Config, vip: &Vip, address: IpAddr, port: u16) -> Option<Probe> {
    let check = &vip.health_check;
    let addr = SocketAddr::new(address, port);
    Some(match check.kind {
        CheckType::None => return None,
        CheckType::Tcp => Probe::Tcp { addr },
        CheckType::Http | CheckType::Https => {
            let tls = (check.kind == CheckType::Https).then(|| check.tls_verify.unwrap_or(false));
            let default_port = if tls.is_some() { 443 } else { 80 };
            let host = check.host.clone().unwrap_or_else(|| match (address, port) {
                (IpAddr::V4(v4), p) if p == default_port => v4.to_string(),
                (IpAddr::V6(v6), p) if p == default_port => format!("[{v6}]"),
                _ => addr.to_string(),
            });
            Probe::Http(HttpProbe {
                addr,
                path: check.path_or_default().to_string(),
                host,
                expect_status: check.expect_status_or_default(),
                expect_body: check.expect_body.clone(),
                tls,
            })
        }
        CheckType::Tunnel => {
            if vip.address.is_ipv6() && address.is_ipv4() {
                return None; // no IPv6 in IPv4: validation refuses it
            }
            Probe::Tunnel(TunnelProbe {
                vip: SocketAddr::new(vip.address, port),
                backend: address,
                tunnel_src: config.tunnel_source.filter(|src| src.is_ipv4() == address.is_ipv4()),
                l2: vip.dsr_type == DsrType::L2,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_config() {
        let config = Config::from_toml_str(
            r#"
            tunnel_source = "198.18.0.1"
            [[vip]]
            name = "web"
            address = "203.0.113.10"
            port = 80
            health_check = { type = "http", port = 8080, path = "/health", expect_body = "ok", interval = "500ms" }
            backends = [{ address = "198.18.1.2" }, { address = "198.18.1.3", state = "drain" }]
            [[vip]]
            name = "tls"
            address = "203.0.113.11"
            port = 443
            health_check = { type = "https", host = "www.example.com", tls_verify = true }
            backends = [{ address = "198.18.1.2" }]
            [[vip]]
            name = "dsr"
            address = "203.0.113.12"
            port = 22
            dsr_type = "l2"
            health_check = { type = "tunnel", rise = 1 }
            backends = [{ address = "198.18.1.4" }]
            [[vip]]
            name = "v6"
            address = "2001:db8:ff::10"
            port = 80
            health_check = { type = "tunnel" }
            backends = [{ address = "2001:db8:11::2" }]
            [[vip]]
            name = "mixed"
            address = "203.0.113.14"
            port = 80
            health_check = { type = "tunnel" }
            backends = [{ address = "2001:db8:11::2" }]
            [[vip]]
            name = "dns"
            address = "203.0.113.13"
            port = 53
            protocol = "udp"
            health_check = { type = "none" }
            backends = [{ address = "198.18.1.5" }]
            "#,
        )
        .unwrap();
        let targets = targets(&config);
        let keys: Vec<String> = targets
            .iter()
            .map(|t| format!("{}/{}", t.vip, t.address))
            .collect();
        assert_eq!(
            keys,
            [
                "web/198.18.1.2",
                "web/198.18.1.3",
                "tls/198.18.1.2",
                "dsr/198.18.1.4",
                "v6/2001:db8:11::2",
                "mixed/2001:db8:11::2"
            ]
        );
        assert_eq!(
            targets[0].probe,
            Probe::Http(HttpProbe {
                addr: "198.18.1.2:8080".parse().unwrap(),
                path: "/health".into(),
                host: "198.18.1.2:8080".into(),
                expect_status: StatusRange {
                    low: 200,
                    high: 399
                },
                expect_body: Some("ok".into()),
                tls: None,
            })
        );
        assert_eq!(
            (targets[0].interval, targets[0].timeout),
            (Duration::from_millis(500), Duration::from_secs(1))
        );
        assert_eq!((targets[0].rise, targets[0].fall), (2, 3));
        let Probe::Http(tls) = &targets[2].probe else {
            panic!()
        };
        assert_eq!(
            (tls.host.as_str(), tls.tls),
            ("www.example.com", Some(true))
        );
        assert_eq!(
            targets[3].probe,
            Probe::Tunnel(TunnelProbe {
                vip: "203.0.113.12:22".parse().unwrap(),
                backend: "198.18.1.4".parse().unwrap(),
                tunnel_src: Some("198.18.0.1".parse().unwrap()),
                l2: true,
            })
        );
        assert_eq!(targets[3].rise, 1);
        // IPv6 backends: IP6IP6, or IPv4 in IPv6; the IPv4 tunnel_source is not theirs.
        assert_eq!(
            targets[4].probe,
            Probe::Tunnel(TunnelProbe {
                vip: "[2001:db8:ff::10]:80".parse().unwrap(),
                backend: "2001:db8:11::2".parse().unwrap(),
                tunnel_src: None,
                l2: false,
            })
        );
        let Probe::Tunnel(mixed) = &targets[5].probe else {
            panic!()
        };
        assert_eq!(
            (mixed.vip, mixed.backend, mixed.tunnel_src),
            ("203.0.113.14:80".parse().unwrap(), "2001:db8:11::2".parse().unwrap(), None)
        );
    }
}
