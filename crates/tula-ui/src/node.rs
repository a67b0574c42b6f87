//! System > Node: this node in or out of service, each VIP's BGP
//! announcement and why it is withdrawn, and with `[cluster]` every node's
//! running revision, health view and ring digest per VIP, mismatches first
//! (the same facts as `tula status` and `tula status --cluster`).

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use maud::{html, Markup};
use tula_bgp::NodeStatus;
use tula_cluster::ClusterView;

use crate::layout::{self, alert, Page, Section};
use crate::session::Session;
use crate::{UiError, UiState};

pub(crate) const PATH: &str = "/ui/node";

pub(crate) async fn page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, UiError> {
    let (node, cluster) = ui
        .app
        .blocking(|state| Ok((state.node.status(), state.cluster.as_ref().map(|member| member.view()))))
        .await?;
    let body = html! {
        h1 { "Node" }
        (this_node(&node))
        @match &cluster {
            Some(view) => (cluster_section(view)),
            None => {
                h2 { "Cluster" }
                p.meta { "This node is not in a cluster: its config has no " code { "[cluster]" } " section (docs/CLUSTER.md)." }
            }
        }
    };
    let page = Page::new("Node", Section::Node, &session).crumb("Node", None);
    Ok(Html(page.render(body)))
}

fn this_node(node: &NodeStatus) -> Markup {
    html! {
        p {
            @if node.in_service {
                span.badge.badge-ok { "in service" }
            } @else {
                span.badge.badge-warning { "drained" }
                " every VIP is withdrawn; what still arrives is forwarded."
            }
        }
        p.meta {
            code { "tula node drain" } " withdraws every VIP and reports when traffic has stopped; "
            code { "tula node resume" } " undoes it."
        }
        h2 { "BGP announcements" }
        @if !node.bgp {
            p.meta { "BGP is off on this node (" code { "tula serve --bgp" } ", docs/CLUSTER.md): it announces nothing." }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="BGP announcements" {
                table.announcements {
                    thead { tr { th scope="col" { "VIP" } th scope="col" { "Address" } th scope="col" { "Announced" } th scope="col" { "Why not" } } }
                    tbody {
                        @for vip in &node.vips {
                            tr data-vip=(vip.vip) {
                                td { a href={ "/ui/vips/" (layout::url_segment(&vip.vip)) } { (vip.vip) } }
                                td { code { (vip.address) } }
                                td { @if vip.announced { span.badge.badge-ok { "announced" } } @else { span.badge.badge-error { "withdrawn" } } }
                                td { (vip.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn cluster_section(view: &ClusterView) -> Markup {
    let mut vips: Vec<&str> = view.nodes.iter().flat_map(|n| n.vips.iter().map(|v| v.name.as_str())).collect();
    vips.sort_unstable();
    vips.dedup();
    html! {
        h2 { "Cluster" }
        @if view.connected {
            p { span.badge.badge-ok { "etcd reached" } " " code { (view.etcd) } }
        } @else {
            (alert("error", html! {
                "This node does not reach etcd (" code { (view.etcd) } "): it forwards with its last revision and catches up when etcd returns."
                @if let Some(error) = &view.error { br; (error) }
            }))
        }
        @if !view.mismatches.is_empty() {
            (alert("warning", html! {
                h2 { "The nodes disagree" }
                "A flow that moves to another node after a failover may land on another backend."
                ul.mismatches { @for line in &view.mismatches { li { (line) } } }
            }))
        }
        p.meta {
            "Cluster revision " strong { (view.cluster_revision.map(|r| r.to_string()).unwrap_or_else(|| "unknown".into())) }
            ", as node " strong { (view.node) } " sees it (" code { "tula status --cluster" } ")."
        }
        div.table-wrap tabindex="0" role="region" aria-label="Cluster nodes" {
            table.cluster-nodes {
                thead { tr {
                    th scope="col" { "Node" } th scope="col" { "Revision" } th scope="col" { "State" }
                    th scope="col" { "Backends down" } th scope="col" { "VIPs announced" }
                } }
                tbody {
                    @for node in &view.nodes {
                        @let down: usize = node.vips.iter().map(|v| v.down.len()).sum();
                        @let announced = node.vips.iter().filter(|v| v.announced == Some(true)).count();
                        tr data-node=(node.node) {
                            td { strong { (node.node) } }
                            td.num { (node.revision) @if let Some(error) = &node.follow_error { br; small.down-list { (error) } } }
                            td { @if node.in_service { span.badge.badge-ok { "in service" } } @else { span.badge.badge-warning { "drained" } } }
                            td.num { (down) }
                            td { @if node.vips.iter().all(|v| v.announced.is_none()) { "BGP off" } @else { (announced) " of " (node.vips.len()) } }
                        }
                    }
                }
            }
        }
        h3 { "Rings per VIP" }
        p.meta { "Equal digests mean equal Maglev rings: the nodes send each new flow to the same backend." }
        div.table-wrap tabindex="0" role="region" aria-label="Ring digests" {
            table.ring-digests {
                thead { tr { th scope="col" { "VIP" } @for node in &view.nodes { th scope="col" { (node.node) } } } }
                tbody {
                    @for name in &vips {
                        @let states: Vec<_> = view.nodes.iter().map(|n| n.vips.iter().find(|v| v.name == *name)).collect();
                        @let first = states.iter().flatten().next().map(|v| v.ring_digest.as_str());
                        @let differ = states.iter().any(|s| s.map(|v| v.ring_digest.as_str()) != first);
                        tr data-vip=(name) class=[differ.then_some("differs")] {
                            td { (name) @if differ { " " span.badge.badge-error { "rings differ" } } }
                            @for state in &states {
                                td {
                                    @match state {
                                        Some(vip) => {
                                            code { (vip.ring_digest) }
                                            @if !vip.down.is_empty() {
                                                br; small.down-list { "sees down: " (vip.down.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")) }
                                            }
                                        }
                                        None => { "not configured" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
