//! What each node publishes about itself, the ring digest that lets nodes
//! compare their Maglev rings without shipping them, and the cluster view
//! that `tula status --cluster` shows, with its mismatches.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tula_control::{NewFlows, Snapshot};

/// One node's state as it publishes it under `PREFIX/nodes/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub node: String,
    /// The revision its data plane runs.
    pub revision: u64,
    /// Seconds since the Unix epoch when it was published.
    pub published: u64,
    /// False while drained (`tula node drain`).
    pub in_service: bool,
    /// The last revision it could not run, and why (e.g. an interface it lacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_error: Option<String>,
    pub vips: Vec<VipState>,
}

/// One VIP on one node: its ring as this node builds it, from this node's health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipState {
    pub name: String,
    pub address: IpAddr,
    /// Where its new flows go here.
    pub new_flows: NewFlows,
    /// [`ring_digest`] of its ring here.
    pub ring_digest: String,
    /// The backends this node's health checker sees down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub down: Vec<IpAddr>,
    /// Whether this node announces it by BGP (`None`: BGP is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<bool>,
}

/// A short digest of a Maglev ring from what decides it: the ring size,
/// where new flows go, and the (address, weight) members. Slots are keyed by
/// backend address, so equal inputs give equal rings on every node whatever
/// its internal ids; equal digests mean equal rings.
pub fn ring_digest(ring_size: u32, new_flows: NewFlows, members: &[(IpAddr, u32)]) -> String {
    let mut text = format!("{ring_size} {new_flows:?}");
    for (address, weight) in members {
        text.push_str(&format!(" {address}={weight}"));
    }
    format!("{:016x}", tula_maglev::key_hash(text.as_bytes(), 0x7475_6c61))
}

impl NodeState {
    /// This node's state from its running snapshot; `announced` says per VIP
    /// name whether BGP announces it (empty: BGP is off).
    pub fn of(
        node: &str,
        snapshot: &Snapshot,
        in_service: bool,
        announced: &BTreeMap<String, bool>,
        follow_error: Option<String>,
    ) -> NodeState {
        let config = snapshot.config();
        let vips = config
            .vips
            .iter()
            .map(|vip| {
                let (new_flows, members) = snapshot
                    .ring_inputs(&vip.name)
                    .expect("the VIP is in the snapshot it came from");
                VipState {
                    name: vip.name.clone(),
                    address: vip.address,
                    new_flows,
                    ring_digest: ring_digest(config.ring_size, new_flows, &members),
                    down: vip
                        .backends
                        .iter()
                        .filter(|b| !snapshot.is_healthy(&vip.name, b.address))
                        .map(|b| b.address)
                        .collect(),
                    announced: announced.get(&vip.name).copied(),
                }
            })
            .collect();
        NodeState {
            node: node.to_string(),
            revision: snapshot.revision(),
            published: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            in_service,
            follow_error,
            vips,
        }
    }
}

/// The cluster as one node sees it (`GET /api/cluster`, `tula status --cluster`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    /// The node that answered.
    pub node: String,
    pub etcd: String,
    /// Whether that node reaches etcd now; while not, it forwards with its last revision.
    pub connected: bool,
    /// Since when it has (or has not) reached etcd, seconds since the Unix epoch.
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The cluster's newest revision (`None`: etcd not reached, or holds none).
    pub cluster_revision: Option<u64>,
    /// Every node that published its state (only this one while etcd is not reached).
    pub nodes: Vec<NodeState>,
    /// What differs between nodes, one line each; empty when they agree.
    pub mismatches: Vec<String>,
}

/// The differences that put flows on different backends after a failover:
/// nodes on different revisions (or behind the cluster's), and per VIP,
/// different rings.
pub fn mismatches(cluster_revision: Option<u64>, nodes: &[NodeState]) -> Vec<String> {
    let mut found = Vec::new();
    for node in nodes {
        if let Some(newest) = cluster_revision.filter(|&n| n != node.revision) {
            found.push(format!(
                "node {} runs revision {}, the cluster's is {newest}",
                node.node, node.revision
            ));
        }
    }
    let mut rings: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for node in nodes {
        for vip in &node.vips {
            rings
                .entry(&vip.name)
                .or_default()
                .entry(&vip.ring_digest)
                .or_default()
                .push(&node.node);
        }
    }
    for (vip, digests) in rings {
        if digests.len() > 1 {
            let sides: Vec<String> = digests
                .iter()
                .map(|(digest, nodes)| format!("{} on {}", digest, nodes.join(", ")))
                .collect();
            found.push(format!("VIP {vip}: rings differ ({})", sides.join("; ")));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, revision: u64, digest: &str) -> NodeState {
        NodeState {
            node: name.into(),
            revision,
            published: 0,
            in_service: true,
            follow_error: None,
            vips: vec![VipState {
                name: "web".into(),
                address: "203.0.113.10".parse().unwrap(),
                new_flows: NewFlows::Backends,
                ring_digest: digest.into(),
                down: vec![],
                announced: Some(true),
            }],
        }
    }

    #[test]
    fn agreeing_nodes_have_no_mismatch_and_each_difference_is_named() {
        assert!(mismatches(Some(3), &[node("a", 3, "x"), node("b", 3, "x")]).is_empty());
        assert_eq!(
            mismatches(Some(4), &[node("a", 4, "x"), node("b", 3, "y")]),
            vec![
                "node b runs revision 3, the cluster's is 4".to_string(),
                "VIP web: rings differ (x on a; y on b)".to_string()
            ]
        );
    }

    #[test]
    fn a_digest_changes_with_a_member_a_weight_or_the_ring_size() {
        let a: IpAddr = "198.18.3.2".parse().unwrap();
        let b: IpAddr = "198.18.3.3".parse().unwrap();
        let base = ring_digest(65537, NewFlows::Backends, &[(a, 1), (b, 1)]);
        assert_eq!(base, ring_digest(65537, NewFlows::Backends, &[(a, 1), (b, 1)]));
        for other in [
            ring_digest(65537, NewFlows::Backends, &[(a, 1)]),
            ring_digest(65537, NewFlows::Backends, &[(a, 1), (b, 2)]),
            ring_digest(251, NewFlows::Backends, &[(a, 1), (b, 1)]),
            ring_digest(65537, NewFlows::KeptLast, &[(a, 1), (b, 1)]),
        ] {
            assert_ne!(base, other);
        }
    }
}
