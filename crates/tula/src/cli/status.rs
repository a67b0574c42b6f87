//! `tula status`: every VIP and its backends in one table, like `ipvsadm -Ln`,
//! with each backend's health and where a VIP's new flows go while none of its
//! backends is up.

use clap::Args;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use tula_client::{BackendStatus, Drain, InterfaceStatus, VipStatus};
use ureq::http::Method;

use super::client::{print_json, Client, ClientArgs};
use super::vip::socket_text;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    narrow: Narrow,
    /// Every node of this node's cluster instead: running revision, in service, and per VIP
    /// its ring digest, the backends its health checks see down and its BGP announcement.
    /// Exits 1 when the nodes disagree (each mismatch is named) or etcd is not reached.
    #[arg(long, conflicts_with_all = ["vip", "filter"])]
    cluster: bool,
}

/// Which VIPs to show (the daemon narrows, so large configs stay quick).
#[derive(Debug, Clone, Default, Args)]
pub struct Narrow {
    /// Only the VIP named NAME.
    #[arg(long, value_name = "NAME")]
    pub vip: Option<String>,
    /// Only VIPs whose name or address, or a backend's address, contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
}

impl Narrow {
    /// `GET /api/status`, narrowed.
    pub fn status(&self, client: &Client) -> anyhow::Result<Vec<VipStatus>> {
        let mut query = Vec::new();
        if let Some(vip) = &self.vip {
            query.push(("vip", vip.as_str()));
        }
        if let Some(filter) = &self.filter {
            query.push(("filter", filter.as_str()));
        }
        client.call(Method::GET, "/api/status", &query, None)
    }
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client);
    if args.cluster {
        return super::cluster::status(&client, args.client.json);
    }
    let status = args.narrow.status(&client)?;
    if args.client.json {
        print_json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    // A daemon older than /api/interfaces has no warnings to give.
    let interfaces: Vec<InterfaceStatus> = client.get("/api/interfaces").unwrap_or_default();
    print!("{}", warnings_text(&interfaces));
    if status.is_empty() && args.narrow.filter.is_some() {
        println!("no VIP matches");
    } else if status.is_empty() {
        println!("no VIPs: add one with `tula vip add` or `tula apply -f FILE`");
    } else {
        print!("{}", status_table(&status));
    }
    // Each VIP's BGP announcement, narrowed like the table; a daemon without /api/node shows none.
    if let Ok(mut node) = client.get::<tula_bgp::NodeStatus>("/api/node") {
        if args.narrow.vip.is_some() || args.narrow.filter.is_some() {
            node.vips.retain(|a| status.iter().any(|v| v.name == a.vip));
        }
        print!("\n{}", super::node::announcement_text(&node));
    }
    Ok(ExitCode::SUCCESS)
}

/// `WARNING lb0: ...`, a line per interface warning.
fn warnings_text(interfaces: &[InterfaceStatus]) -> String {
    let mut out = String::new();
    for interface in interfaces {
        for warning in &interface.warnings {
            out.push_str(&format!("WARNING {}: {warning}\n", interface.name));
        }
    }
    if !out.is_empty() {
        out.push_str("(`tula doctor` says how to fix them)\n\n");
    }
    out
}

/// Per VIP a line (with the tunnel MTU toward its backends and the MSS that
/// fits, and where new flows go while no backend is up), per backend an
/// indented `->` line with its state, health (and for how long), weight,
/// active flows (seen within the window), connection-table entries, packets
/// and bytes, and where a drain stands.
pub fn status_table(status: &[VipStatus]) -> String {
    status_table_at(status, SystemTime::now())
}

/// [`status_table`] as seen at `now`.
fn status_table_at(status: &[VipStatus], now: SystemTime) -> String {
    let text = |s: &str| s.to_string();
    let window = status.first().map_or(60, |v| v.active_window_s);
    let active = format!("Active({window}s)");
    let mut rows = vec![
        [
            "Prot",
            "LocalAddress:Port",
            "Scheduler",
            "DSR",
            "TunnelMTU/MSS",
            &active,
            "TableEntries",
            "Packets",
            "Bytes",
            "Name",
        ]
        .map(text),
        [
            "  ->",
            "RemoteAddress",
            "State",
            "Health",
            "Weight",
            &active,
            "TableEntries",
            "Packets",
            "Bytes",
            "",
        ]
        .map(text),
    ];
    for vip in status {
        rows.push([
            vip.protocol.to_uppercase(),
            socket_text(vip.address, vip.port),
            vip.scheduler.clone(),
            vip.dsr_type.clone(),
            match (vip.tunnel_mtu, vip.mss) {
                (Some(mtu), Some(mss)) => format!("{mtu}/{mss}"),
                _ => "-".to_string(),
            },
            vip.active_flows.to_string(),
            vip.table_entries.to_string(),
            vip.packets.to_string(),
            vip.bytes.to_string(),
            if vip.new_flows == "backends" {
                vip.name.clone()
            } else {
                format!("{} (new flows: {})", vip.name, vip.new_flows)
            },
        ]);
        for backend in &vip.backends {
            rows.push([
                "  ->".to_string(),
                backend.address.to_string(),
                backend.state.clone(),
                health_text(backend, now),
                backend.weight.to_string(),
                backend.active_flows.to_string(),
                backend.table_entries.to_string(),
                backend.packets.to_string(),
                backend.bytes.to_string(),
                backend.drain(vip).map(|d| drain_text(&d, now)).unwrap_or_default(),
            ]);
        }
    }
    table(&rows)
}

/// "draining: 14 active flows", "drained: no flows since 12:03:11Z (2m 5s ago)".
fn drain_text(drain: &Drain, now: SystemTime) -> String {
    match drain {
        Drain::Unknown => "draining (flows not sampled yet)".to_string(),
        Drain::Draining(1) => "draining: 1 active flow".to_string(),
        Drain::Draining(n) => format!("draining: {n} active flows"),
        Drain::Drained(None) => "drained: no flows seen".to_string(),
        Drain::Drained(Some(time)) => match humantime::parse_rfc3339(time) {
            Ok(since) => {
                let ago = Duration::from_secs(now.duration_since(since).unwrap_or_default().as_secs());
                format!("drained: no flows since {time} ({} ago)", humantime::format_duration(ago))
            }
            Err(_) => format!("drained: no flows since {time}"),
        },
    }
}

/// "up" or "down", and for how long when the backend is checked: "down 12s".
fn health_text(backend: &BackendStatus, now: SystemTime) -> String {
    let Some(health) = &backend.health else {
        return if backend.healthy { "up" } else { "down" }.to_string();
    };
    match humantime::parse_rfc3339(&health.since) {
        Ok(since) => {
            let seconds = now.duration_since(since).unwrap_or_default().as_secs();
            let held = humantime::format_duration(Duration::from_secs(seconds));
            format!("{} {held}", health.state)
        }
        Err(_) => health.state.clone(),
    }
}

/// Rows as columns padded to their widest cell, two spaces apart.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tula_client::{CheckCounts, HealthSummary};

    fn vip(new_flows: &str, backends: Vec<BackendStatus>) -> VipStatus {
        VipStatus {
            name: "web".into(),
            address: "203.0.113.10".parse().unwrap(),
            port: 80,
            protocol: "tcp".into(),
            dsr_type: "l3-ipip".into(),
            scheduler: "maglev".into(),
            packets: 10,
            bytes: 1000,
            active_flows: 0,
            table_entries: 0,
            active_window_s: 60,
            flows_sampled_at: Some("2025-06-01T12:05:00Z".into()),
            tunnel_mtu: Some(1480),
            mss: Some(1440),
            icmp_echo: false,
            new_flows: new_flows.into(),
            backends,
        }
    }

    fn backend(address: &str, healthy: bool, health: Option<(&str, &str)>) -> BackendStatus {
        BackendStatus {
            address: address.parse().unwrap(),
            weight: 1,
            state: "active".into(),
            healthy,
            active_flows: 0,
            table_entries: 0,
            last_flow_seen: None,
            packets: 0,
            bytes: 0,
            health: health.map(|(state, since)| HealthSummary {
                check: "tcp".into(),
                state: state.into(),
                since: since.into(),
                last_result: None,
                counts: CheckCounts {
                    passed: 0,
                    failed: 0,
                    errors: 0,
                    went_down: 0,
                    went_up: 0,
                },
            }),
        }
    }

    #[test]
    fn the_table_shows_health_with_its_age_and_where_new_flows_go() {
        let now = humantime::parse_rfc3339("2025-06-01T12:05:02Z").unwrap();
        let status = [vip(
            "dropped",
            vec![
                backend(
                    "198.18.11.2",
                    false,
                    Some(("down", "2025-06-01T12:04:50.250Z")),
                ),
                backend("198.18.12.2", true, Some(("up", "2025-06-01T10:00:00Z"))),
                backend("198.18.13.2", true, None),
            ],
        )];
        let table = status_table_at(&status, now);
        let line = |needle: &str| {
            table
                .lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{table}"))
        };
        assert!(
            line("203.0.113.10:80").contains("web (new flows: dropped)"),
            "{table}"
        );
        assert!(line("198.18.11.2").contains("  down 11s  "), "{table}");
        assert!(line("198.18.12.2").contains("  up 2h 5m 2s  "), "{table}");
        assert!(line("198.18.13.2").contains("  up  "), "unchecked: {table}");
        let normal = status_table_at(&[vip("backends", Vec::new())], now);
        assert!(!normal.contains("new flows"), "{normal}");
    }

    #[test]
    fn a_drain_shows_its_flows_then_when_the_last_one_was_seen() {
        let now = humantime::parse_rfc3339("2025-06-01T12:05:02Z").unwrap();
        let draining = |active_flows, last_flow_seen: Option<&str>| BackendStatus {
            state: "drain".into(),
            active_flows,
            table_entries: 40,
            last_flow_seen: last_flow_seen.map(str::to_string),
            ..backend("198.18.11.2", true, None)
        };
        let line = |status: VipStatus| {
            let table = status_table_at(&[status], now);
            table.lines().find(|l| l.contains("198.18.11.2")).unwrap().to_string()
        };
        let busy = line(vip("backends", vec![draining(14, Some("2025-06-01T12:05:00Z"))]));
        let cells: Vec<&str> = busy.split_whitespace().collect();
        assert_eq!(cells[5..], ["14", "40", "0", "0", "draining:", "14", "active", "flows"], "{busy}");
        let done = line(vip("backends", vec![draining(0, Some("2025-06-01T12:03:11Z"))]));
        assert!(done.ends_with("drained: no flows since 2025-06-01T12:03:11Z (1m 51s ago)"), "{done}");
        let never = line(vip("backends", vec![draining(0, None)]));
        assert!(never.ends_with("drained: no flows seen"), "{never}");
        let unsampled = VipStatus { flows_sampled_at: None, ..vip("backends", vec![draining(0, None)]) };
        assert!(line(unsampled).ends_with("draining (flows not sampled yet)"));
        let active = line(vip("backends", vec![backend("198.18.11.2", true, None)]));
        assert!(!active.contains("drain"), "{active}");
        let header = status_table_at(&[vip("backends", Vec::new())], now);
        assert!(header.lines().next().unwrap().contains("Active(60s)  TableEntries"), "{header}");
    }
}
