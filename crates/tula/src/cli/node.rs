//! `tula node`: take this node out of service (withdraw its VIPs from BGP,
//! keep forwarding what still arrives) and put it back.

use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tula_bgp::NodeStatus;

use super::client::{print_json, Client, ClientArgs, Payload};

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// In service or drained, and each VIP's BGP announcement.
    Status,
    /// Withdraw every VIP; forwarding goes on for what still arrives. Waits until traffic stops.
    #[command(after_help = "Traffic has stopped once no packet reached any VIP for --quiet. \
The node stays drained across restarts until `tula node resume`.")]
    Drain {
        /// Return once the VIPs are withdrawn, without waiting for traffic to stop.
        #[arg(long)]
        no_wait: bool,
        /// How long no VIP may receive a packet for traffic to count as stopped.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        quiet: Duration,
        /// Give up waiting (the node stays drained) after this long.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Put the node back in service: announce every VIP it can serve.
    Resume,
}

pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client);
    match args.command {
        NodeCommand::Status => {
            let status: NodeStatus = client.get("/api/node")?;
            show(&args.client, &status)?;
        }
        NodeCommand::Resume => {
            let status: NodeStatus = client.post("/api/node/resume", Payload::Json(serde_json::json!({})))?;
            show(&args.client, &status)?;
        }
        NodeCommand::Drain { no_wait, quiet, timeout } => {
            let status: NodeStatus = client.post("/api/node/drain", Payload::Json(serde_json::json!({})))?;
            if args.client.json {
                print_json(&status)?;
            } else {
                println!("drained: every VIP is withdrawn; forwarding goes on for what still arrives");
            }
            if no_wait {
                return Ok(ExitCode::SUCCESS);
            }
            return wait_for_quiet(&client, &args.client, status.vip_packets, quiet, timeout);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls the VIPs' packet count until it stays the same for `quiet`.
fn wait_for_quiet(client: &Client, args: &ClientArgs, mut packets: u64, quiet: Duration, timeout: Duration) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut last_change = started;
    let mut still = 0;
    while last_change.elapsed() < quiet {
        if started.elapsed() > timeout {
            let message = format!("traffic has not stopped after {:.1}s ({still} packets in the last poll); the node stays drained", started.elapsed().as_secs_f64());
            if args.json {
                eprintln!("{message}");
            } else {
                println!("{message}");
            }
            return Ok(ExitCode::from(1));
        }
        std::thread::sleep(Duration::from_millis(250));
        let status: NodeStatus = client.get("/api/node")?;
        if status.vip_packets != packets {
            still = status.vip_packets - packets.min(status.vip_packets);
            packets = status.vip_packets;
            last_change = Instant::now();
        }
    }
    let stopped = last_change.duration_since(started);
    if !args.json {
        println!("traffic stopped {:.1}s after the withdrawal (no packet to any VIP for {:?})", stopped.as_secs_f64(), quiet);
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: &ClientArgs, status: &NodeStatus) -> anyhow::Result<()> {
    if args.json {
        return print_json(status);
    }
    print!("{}", announcement_text(status));
    Ok(())
}

/// The node's state and one line per VIP: announced, or withdrawn and why.
pub fn announcement_text(status: &NodeStatus) -> String {
    let mut out = format!(
        "Node: {}; BGP: {}\n",
        if status.in_service { "in service" } else { "drained (tula node resume)" },
        match (status.bgp, status.table) {
            (true, Some(table)) => format!("announcing through table {table}"),
            _ => "off (tula serve --bgp)".to_string(),
        }
    );
    for vip in &status.vips {
        let state = if vip.announced {
            "announced".to_string()
        } else {
            format!("withdrawn: {}", vip.reason.as_deref().unwrap_or("-"))
        };
        out.push_str(&format!("  {:<16} {:<16} {state}\n", vip.vip, vip.address));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tula_bgp::Announcement;

    #[test]
    fn announcement_text_says_why_a_vip_is_withdrawn() {
        let status = NodeStatus {
            in_service: true,
            bgp: true,
            table: Some(4242),
            vips: vec![
                Announcement { vip: "web".into(), address: "203.0.113.10".parse().unwrap(), announced: false, reason: Some("VIP web has no healthy backend".into()) },
                Announcement { vip: "l2".into(), address: "203.0.113.20".parse().unwrap(), announced: true, reason: None },
            ],
            ..NodeStatus::default()
        };
        let text = announcement_text(&status);
        assert!(text.starts_with("Node: in service; BGP: announcing through table 4242\n"), "{text}");
        assert!(text.contains("web              203.0.113.10     withdrawn: VIP web has no healthy backend"), "{text}");
        assert!(text.contains("l2               203.0.113.20     announced"), "{text}");
    }
}
