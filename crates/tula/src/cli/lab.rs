//! `tula lab`: bring the demo network up, show traffic, take it down.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use tula_lab::{Lab, LabOptions};

#[derive(Debug, Args)]
#[command(after_help = "With no subcommand, `tula lab` runs the demo (`tula lab demo`).\n\
Everything lives in network namespaces named NAME-client, NAME-router, NAME-lb, NAME-be1..; \
explore them with `ip netns exec NAME-client curl http://203.0.113.10/`. The lab is dual-stack: \
`curl -6 -g 'http://[2001:db8:ff::10]/'` asks the IPv6 VIP (IP6IP6 to the backends' IPv6 addresses), \
`curl http://203.0.113.30/` the IPv4 VIP served by IPv6 backends (IPv4 in IPv6).")]
pub struct LabArgs {
    /// Lab name: the prefix of its namespaces.
    #[arg(long, default_value = "tula", global = true)]
    name: String,
    /// Number of backends, each on its own routed subnet (1-9).
    #[arg(long, default_value_t = 3, global = true)]
    backends: u8,
    /// Load-balancer nodes: 1, or 2 announced by BGP (BIRD) to a router doing ECMP over them.
    #[arg(long, default_value_t = 1, global = true)]
    lbs: u8,
    /// With --lbs 2: also run an etcd in the router namespace and make the nodes one cluster whose config lives in it (docs/CLUSTER.md).
    #[arg(long, global = true)]
    cluster: bool,
    #[command(subcommand)]
    command: Option<LabCommand>,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build the network and start the balancer and backends.
    Up,
    /// Bring the lab up if needed, send HTTP requests, and show where they and the replies went.
    Demo {
        /// How many HTTP requests to send to the Layer 3 VIP.
        #[arg(long, default_value_t = 300)]
        requests: usize,
    },
    /// Stop the lab's processes and remove every namespace and link it made.
    Down,
    /// Runs a lab backend's HTTP server (used by `tula lab up`).
    #[command(hide = true)]
    HttpServer {
        #[arg(long)]
        name: String,
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
}

pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let opts = LabOptions {
        name: args.name.clone(),
        backends: args.backends,
        tula_bin: std::env::current_exe().context("finding the tula executable")?,
        etcd: args.cluster,
    };
    if args.cluster && args.lbs < 2 {
        anyhow::bail!("--cluster needs --lbs 2: a cluster of one node has nothing to share");
    }
    // A lab that is up keeps the number of nodes it was built with.
    let second_node = format!("{}-lb2", args.name);
    let lbs = if tula_net::netns_list().unwrap_or_default().contains(&second_node) { 2 } else { args.lbs };
    let lab = Lab::cluster(&opts, lbs)?;
    match args.command.unwrap_or(LabCommand::Demo { requests: 300 }) {
        LabCommand::Up => {
            lab.up()?;
            println!("lab {:?} is up. Take it down with: tula lab down --name {}", args.name, args.name);
        }
        LabCommand::Demo { requests } => {
            if !lab.topology.exists() {
                println!("Bringing the lab up ...");
                lab.up()?;
            }
            let report = lab.demo(requests)?;
            print!("{}", report.render());
            println!(
                "\nThe lab stays up to explore, e.g. `ip netns exec {name}-client curl -s http://203.0.113.10/`,\n\
                 or over IPv6 `ip netns exec {name}-client curl -s -6 -g 'http://[2001:db8:ff::10]/'`.\nTake it down with: tula lab down{down}",
                name = args.name,
                down = if args.name == "tula" { String::new() } else { format!(" --name {}", args.name) }
            );
        }
        LabCommand::Down => {
            lab.down()?;
            println!("lab {:?} is down: its namespaces and links are gone.", args.name);
        }
        LabCommand::HttpServer { name, listen } => {
            tula_lab::http::serve(&name, &listen)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
