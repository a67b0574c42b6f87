//! `tula bgp`: the BIRD 2 config for announcing this node's VIPs, the
//! `tula serve --bgp*` options, and the holder process the daemon starts.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tula_bgp::bird::{NodeConfig, Timers};

#[derive(Debug, Args)]
pub struct BgpArgs {
    #[command(subcommand)]
    command: BgpCommand,
}

#[derive(Debug, Subcommand)]
enum BgpCommand {
    /// Print a BIRD 2 config that announces the VIPs `tula serve --bgp` keeps in its table.
    #[command(after_help = "Example:\n  tula bgp config --asn 65001 --peer 198.18.1.1 --peer-asn 65000 --local 198.18.1.2 > /etc/bird/bird.conf\n  \
  tula bgp config --asn 65001 --peer 198.18.1.1 --peer 2001:db8:1::1 --peer-asn 65000 --local 198.18.1.2 --local6 2001:db8:1::2\n  \
tula serve --bgp ...   # keeps one /32 (IPv4) or /128 (IPv6) route per servable VIP in table 4242\n\
See docs/CLUSTER.md for the router side (BIRD or FRR) and the timers.")]
    Config(ConfigArgs),
    /// Keeps the announcement device open after the daemon ends (started by `tula serve --bgp`).
    #[command(hide = true)]
    Hold {
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Duration,
        #[arg(long)]
        pin_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// This node's AS number.
    #[arg(long)]
    asn: u32,
    /// A router to announce to (repeat for each). An IPv4 peer gets the IPv4 VIPs (/32),
    /// an IPv6 peer the IPv6 VIPs (/128); give a dual-stack router both addresses.
    #[arg(long = "peer", required = true)]
    peers: Vec<IpAddr>,
    /// The routers' AS number.
    #[arg(long)]
    peer_asn: u32,
    /// This node's address toward the routers: router id, and the only address BIRD listens on.
    #[arg(long)]
    local: Option<Ipv4Addr>,
    /// This node's IPv6 address toward IPv6 peers (the address BIRD binds those sessions to).
    #[arg(long)]
    local6: Option<Ipv6Addr>,
    /// The routing table tula keeps announced routes in (tula serve --bgp-table).
    #[arg(long, default_value_t = tula_bgp::DEFAULT_TABLE)]
    table: u32,
    /// BGP hold time in seconds: how long a silent session lasts.
    #[arg(long, default_value_t = 3)]
    hold: u16,
    /// BGP keepalive interval in seconds (at most a third of the hold time).
    #[arg(long, default_value_t = 1)]
    keepalive: u16,
    /// Also run BFD on the sessions (100 ms x 3): a silent router or node is noticed in 0.3 s.
    #[arg(long)]
    bfd: bool,
    /// BIRD's log file, or "stderr" (syslog if absent).
    #[arg(long)]
    log: Option<String>,
}

/// `tula serve`'s BGP options.
#[derive(Debug, Clone, Args)]
pub struct ServeBgpArgs {
    /// Announce each VIP this node can serve by BGP, through BIRD (docs/CLUSTER.md).
    #[arg(long)]
    bgp: bool,
    /// The routing table the announced routes go in; BIRD's kernel protocol learns it.
    #[arg(long, default_value_t = tula_bgp::DEFAULT_TABLE, value_name = "TABLE")]
    bgp_table: u32,
    /// The TUN device the announced routes point out of.
    #[arg(long, default_value = tula_bgp::DEFAULT_DEVICE, value_name = "NAME")]
    bgp_device: String,
    /// How long announcements outlive a stopped or dead daemon (the pinned data plane forwards meanwhile).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    bgp_grace: Duration,
    /// With --unload-on-exit: how long to wait after withdrawing before unloading.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    bgp_settle: Duration,
}

impl ServeBgpArgs {
    pub fn options(&self) -> tula_bgp::AnnounceOptions {
        tula_bgp::AnnounceOptions {
            enabled: self.bgp,
            table: self.bgp_table,
            device: self.bgp_device.clone(),
            grace: self.bgp_grace,
            settle: self.bgp_settle,
            ..tula_bgp::AnnounceOptions::default()
        }
    }
}

pub fn run(args: BgpArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BgpCommand::Config(c) => {
            let config = NodeConfig {
                asn: c.asn,
                peers: c.peers,
                peer_asn: c.peer_asn,
                local: c.local,
                local6: c.local6,
                table: c.table,
                timers: Timers { hold: c.hold, keepalive: c.keepalive, bfd: c.bfd },
                log: c.log,
            };
            print!("{}", config.render()?);
        }
        BgpCommand::Hold { grace, pin_dir } => {
            tula_bgp::hold::run(grace, pin_dir).context("holding the announcement device")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
