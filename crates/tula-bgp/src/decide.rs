//! Which VIP addresses a node announces: a pure function of what it can serve.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// What the node can serve right now, as the daemon sees it.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// The data plane is loaded and every interface it should run on is up
    /// with the XDP program attached.
    pub forwarding: bool,
    /// Why not, when `forwarding` is false (e.g. "eth0 has no XDP program").
    pub not_forwarding: Option<String>,
    pub vips: Vec<VipReadiness>,
}

#[derive(Debug, Clone)]
pub struct VipReadiness {
    pub name: String,
    pub address: IpAddr,
    /// At least one of its backends is up and takes new flows.
    pub has_backend: bool,
}

/// One VIP's announcement state, as `tula status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Announcement {
    pub vip: String,
    pub address: IpAddr,
    pub announced: bool,
    /// Why it is not announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The addresses to announce, and each VIP's state with the reason it is
/// withdrawn. An address is announced only if every VIP on it can be served
/// here: traffic for a VIP with no backend up is better sent to a node that
/// has one. IPv4 VIPs are announced as /32 routes, IPv6 VIPs as /128.
pub fn decide(readiness: &Readiness, in_service: bool) -> (Vec<IpAddr>, Vec<Announcement>) {
    let mut blocked: BTreeMap<IpAddr, Option<String>> = BTreeMap::new();
    for vip in &readiness.vips {
        let reason = if !in_service {
            Some("node drained".to_string())
        } else if !readiness.forwarding {
            Some(readiness.not_forwarding.clone().unwrap_or_else(|| "data plane not forwarding".into()))
        } else if !vip.has_backend {
            Some(format!("VIP {} has no healthy backend", vip.name))
        } else {
            None
        };
        let entry = blocked.entry(vip.address).or_insert(None);
        if entry.is_none() {
            *entry = reason;
        }
    }
    let announced: Vec<IpAddr> =
        blocked.iter().filter(|(_, reason)| reason.is_none()).map(|(address, _)| *address).collect();
    let states = readiness
        .vips
        .iter()
        .map(|vip| {
            let reason = blocked.get(&vip.address).cloned().flatten();
            Announcement { vip: vip.name.clone(), address: vip.address, announced: reason.is_none(), reason }
        })
        .collect();
    (announced, states)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(name: &str, address: &str, has_backend: bool) -> VipReadiness {
        VipReadiness { name: name.into(), address: address.parse().unwrap(), has_backend }
    }

    fn ready(vips: Vec<VipReadiness>) -> Readiness {
        Readiness { forwarding: true, not_forwarding: None, vips }
    }

    #[test]
    fn announces_each_address_once_while_its_vips_have_backends() {
        let r = ready(vec![vip("web", "203.0.113.10", true), vip("udp", "203.0.113.10", true), vip("l2", "203.0.113.20", true)]);
        let (announced, states) = decide(&r, true);
        assert_eq!(announced, ["203.0.113.10", "203.0.113.20"].map(|a| a.parse::<IpAddr>().unwrap()));
        assert!(states.iter().all(|s| s.announced && s.reason.is_none()));
    }

    #[test]
    fn a_vip_without_backends_withdraws_its_address_for_every_vip_on_it() {
        let r = ready(vec![vip("web", "203.0.113.10", false), vip("udp", "203.0.113.10", true), vip("l2", "203.0.113.20", true)]);
        let (announced, states) = decide(&r, true);
        assert_eq!(announced, ["203.0.113.20".parse::<IpAddr>().unwrap()]);
        assert_eq!(states[1].reason.as_deref(), Some("VIP web has no healthy backend"));
        assert!(states[2].announced);
    }

    #[test]
    fn drained_or_not_forwarding_withdraws_everything() {
        let r = ready(vec![vip("web", "203.0.113.10", true)]);
        let (announced, states) = decide(&r, false);
        assert!(announced.is_empty());
        assert_eq!(states[0].reason.as_deref(), Some("node drained"));
        let down = Readiness { forwarding: false, not_forwarding: Some("eth0 is down".into()), ..r };
        let (announced, states) = decide(&down, true);
        assert!(announced.is_empty());
        assert_eq!(states[0].reason.as_deref(), Some("eth0 is down"));
    }

    #[test]
    fn ipv6_vips_are_announced_like_ipv4_ones() {
        let r = ready(vec![vip("v6", "2001:db8:113::10", true), vip("v6-down", "2001:db8:113::20", false)]);
        let (announced, states) = decide(&r, true);
        assert_eq!(announced, ["2001:db8:113::10".parse::<IpAddr>().unwrap()]);
        assert!(states[0].announced);
        assert_eq!(states[1].reason.as_deref(), Some("VIP v6-down has no healthy backend"));
    }
}
