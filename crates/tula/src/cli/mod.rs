//! Command-line model of `tula` and dispatch to the subcommands.

mod lab;

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
    }
}
