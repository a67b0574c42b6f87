//! `tula status --cluster`: every node of this node's cluster as it
//! published itself in etcd (docs/CLUSTER.md), and what differs between them.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use tula_cluster::ClusterView;

use super::client::{print_json, Client};
use super::status::table;

pub fn status(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let view: ClusterView = client.get("/api/cluster")?;
    if json {
        print_json(&view)?;
    } else {
        print!("{}", cluster_text(&view, unix_now()));
    }
    let agreed = view.connected && view.mismatches.is_empty();
    Ok(if agreed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The view as text: etcd, a line per node, a line per VIP per node, then each mismatch.
fn cluster_text(view: &ClusterView, now: u64) -> String {
    let ago = |t: u64| format!("{}s ago", now.saturating_sub(t));
    let mut out = match (view.connected, &view.error) {
        (true, _) => format!(
            "cluster: etcd {} reached by {} (for {}), newest revision {}\n",
            view.etcd,
            view.node,
            ago(view.since).trim_end_matches(" ago"),
            view.cluster_revision.map_or("none".to_string(), |n| n.to_string())
        ),
        (false, error) => format!(
            "WARNING cluster: {} does not reach etcd {} (for {}): it forwards with its running revision, changes are refused; only its own state is shown\n  {}\n",
            view.node,
            view.etcd,
            ago(view.since).trim_end_matches(" ago"),
            error.as_deref().unwrap_or("no answer")
        ),
    };
    let text = |s: &str| s.to_string();
    let mut nodes = vec![["Node", "Revision", "InService", "Published", "CannotRun"].map(text)];
    for node in &view.nodes {
        nodes.push([
            node.node.clone(),
            node.revision.to_string(),
            if node.in_service { "yes" } else { "drained" }.into(),
            ago(node.published),
            node.follow_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&nodes));
    let mut vips = vec![["VIP", "Node", "RingDigest", "NewFlows", "Down", "Announced"].map(text)];
    let mut names: Vec<&str> = view.nodes.iter().flat_map(|n| n.vips.iter().map(|v| v.name.as_str())).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        for node in &view.nodes {
            let Some(vip) = node.vips.iter().find(|v| v.name == name) else {
                vips.push([name.into(), node.node.clone(), "(no such VIP)".into(), "-".into(), "-".into(), "-".into()]);
                continue;
            };
            let down: Vec<String> = vip.down.iter().map(|a| a.to_string()).collect();
            vips.push([
                name.into(),
                node.node.clone(),
                vip.ring_digest.clone(),
                serde_json::to_value(vip.new_flows).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                if down.is_empty() { "-".into() } else { down.join(",") },
                match vip.announced {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "bgp off".into(),
                },
            ]);
        }
    }
    out.push('\n');
    out.push_str(&table(&vips));
    if view.mismatches.is_empty() && view.connected {
        out.push_str("\nAll nodes run the same revision and build the same rings.\n");
    } else {
        out.push('\n');
        for mismatch in &view.mismatches {
            out.push_str(&format!("MISMATCH {mismatch}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tula_cluster::{NodeState, VipState};

    fn node(name: &str, revision: u64, digest: &str, down: &[&str]) -> NodeState {
        NodeState {
            node: name.into(),
            revision,
            published: 100,
            in_service: true,
            follow_error: None,
            vips: vec![VipState {
                name: "web".into(),
                address: "203.0.113.10".parse().unwrap(),
                new_flows: tula_control::NewFlows::Backends,
                ring_digest: digest.into(),
                down: down.iter().map(|a| a.parse().unwrap()).collect(),
                announced: Some(true),
            }],
        }
    }

    #[test]
    fn each_node_and_vip_gets_a_line_and_each_mismatch_is_flagged() {
        let view = ClusterView {
            node: "lb".into(),
            etcd: "http://198.18.1.1:2379".into(),
            connected: true,
            since: 40,
            error: None,
            cluster_revision: Some(4),
            nodes: vec![node("lb", 4, "aaaa", &[]), node("lb2", 4, "bbbb", &["198.18.11.2"])],
            mismatches: vec!["VIP web: rings differ (aaaa on lb; bbbb on lb2)".into()],
        };
        let text = cluster_text(&view, 101);
        assert!(text.starts_with("cluster: etcd http://198.18.1.1:2379 reached by lb (for 61s), newest revision 4\n"), "{text}");
        assert!(text.contains("lb2   4         yes        1s ago"), "{text}");
        assert!(text.contains("web  lb2   bbbb        backends  198.18.11.2  yes"), "{text}");
        assert!(text.ends_with("MISMATCH VIP web: rings differ (aaaa on lb; bbbb on lb2)\n"), "{text}");
    }
}
