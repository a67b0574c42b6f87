//! `tula status`: every VIP and its backends in one table, like `ipvsadm -Ln`.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::process::ExitCode;

use super::client::{print_json, Client, ClientArgs};
use super::vip::socket_text;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    client: ClientArgs,
}

/// A VIP as `GET /api/status` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VipStatus {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: String,
    pub dsr_type: String,
    pub scheduler: String,
    pub packets: u64,
    pub bytes: u64,
    /// The largest client packet the tunnel carries to the backends, and the TCP MSS that fits.
    #[serde(default)]
    pub tunnel_mtu: Option<u16>,
    #[serde(default)]
    pub mss: Option<u16>,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendStatus {
    pub address: IpAddr,
    pub weight: u32,
    pub state: String,
    pub healthy: bool,
    pub active_flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let status: Vec<VipStatus> = Client::new(&args.client).get("/api/status")?;
    if args.client.json {
        print_json(&status)?;
    } else if status.is_empty() {
        println!("no VIPs: add one with `tula vip add` or `tula apply -f FILE`");
    } else {
        print!("{}", status_table(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// Per VIP a line (with the tunnel MTU toward its backends and the MSS that
/// fits), per backend an indented `->` line with its state, health, weight,
/// active flows, packets and bytes.
pub fn status_table(status: &[VipStatus]) -> String {
    let text = |s: &str| s.to_string();
    let mut rows = vec![
        [
            "Prot",
            "LocalAddress:Port",
            "Scheduler",
            "DSR",
            "Name",
            "TunnelMTU/MSS",
            "Packets",
            "Bytes",
        ]
        .map(text),
        [
            "  ->",
            "RemoteAddress",
            "State",
            "Health",
            "Weight",
            "ActiveFlows",
            "Packets",
            "Bytes",
        ]
        .map(text),
    ];
    for vip in status {
        rows.push([
            vip.protocol.to_uppercase(),
            socket_text(vip.address, vip.port),
            vip.scheduler.clone(),
            vip.dsr_type.clone(),
            vip.name.clone(),
            match (vip.tunnel_mtu, vip.mss) {
                (Some(mtu), Some(mss)) => format!("{mtu}/{mss}"),
                _ => "-".to_string(),
            },
            vip.packets.to_string(),
            vip.bytes.to_string(),
        ]);
        for backend in &vip.backends {
            rows.push([
                "  ->".to_string(),
                backend.address.to_string(),
                backend.state.clone(),
                if backend.healthy { "up" } else { "down" }.to_string(),
                backend.weight.to_string(),
                backend.active_flows.to_string(),
                backend.packets.to_string(),
                backend.bytes.to_string(),
            ]);
        }
    }
    table(&rows)
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
