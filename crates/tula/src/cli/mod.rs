//! Command-line model of `tula` and dispatch to the subcommands.

mod apply;
mod backend;
mod check;
mod bgp;
mod client;
mod cluster;
mod completions;
mod config;
mod dataplane;
mod doctor;
mod lab;
mod node;
mod serve;
mod stats;
mod status;
mod vip;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// tula: an XDP layer 4 load balancer with Layer 3 (IPIP) and Layer 2 Direct Server Return.
#[derive(Debug, Parser)]
#[command(name = "tula", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The demo network in namespaces: client, router, load balancer, backends on other subnets.
    Lab(lab::LabArgs),
    /// Set up, check and undo a backend host's decapsulation of tunnelled DSR traffic.
    Decap(tula_decap::cli::DecapArgs),
    /// Run the daemon: data plane, REST API and metrics (see docs/OPERATIONS.md).
    Serve(serve::ServeArgs),
    /// List, show, add, change and remove VIPs.
    Vip(vip::VipArgs),
    /// Add, remove, re-weight and drain a VIP's backends.
    Backend(backend::BackendArgs),
    /// Every VIP and backend with state, weight, active flows, packets and bytes.
    Status(status::StatusArgs),
    /// The data plane's counters; with --watch, rates per second.
    Stats(stats::StatsArgs),
    /// The saved revisions: history, show, rollback.
    Config(config::ConfigArgs),
    /// Save and apply a config file (declarative: the daemon makes it so).
    Apply(apply::FileArgs),
    /// Show what applying a config file would change.
    Diff(apply::FileArgs),
    /// Check a config file without a daemon, and this host's readiness to run it (exit 0 ok, 1 problems, 2 could not check).
    Check(check::CheckArgs),
    /// Check a running load balancer: XDP mode, veth peers, sysctls, pins, routes, MTU, health, replies bypassing it.
    Doctor(doctor::DoctorArgs),
    /// Take this node out of service (withdraw its VIPs from BGP) and put it back.
    Node(node::NodeArgs),
    /// BGP: the BIRD config that announces this node's VIPs (docs/CLUSTER.md).
    Bgp(bgp::BgpArgs),
    /// Remove the pinned data plane.
    Dataplane(dataplane::DataplaneArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Print the man page.
    Man,
}

pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Lab(args) => lab::run(args),
        Command::Decap(args) => Ok(tula_decap::cli::run(args)?),
        Command::Serve(args) => serve::run(args, cli.verbose),
        Command::Vip(args) => vip::run(args),
        Command::Backend(args) => backend::run(args),
        Command::Status(args) => status::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Config(args) => config::run(args),
        Command::Apply(args) => apply::apply(args),
        Command::Diff(args) => apply::diff(args),
        Command::Check(args) => check::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Node(args) => node::run(args),
        Command::Bgp(args) => bgp::run(args),
        Command::Dataplane(args) => dataplane::run(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man => completions::man(),
    }
}
