//! `tula backend add|rm|set|drain VIP ADDR`: a VIP's backends, through the daemon's API.

use clap::{Args, Subcommand};
use serde_json::Value;
use std::net::IpAddr;
use std::process::ExitCode;

use tula_client::BackendChange;

use super::client::{Client, ClientArgs, Payload};
use super::vip::report;
use ureq::http::Method;

#[derive(Debug, Args)]
pub struct BackendArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: BackendCommand,
}

#[derive(Debug, Subcommand)]
enum BackendCommand {
    /// Add a backend to a VIP.
    Add {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        settings: BackendSettings,
        /// The backend's port; must equal the VIP's (DSR cannot translate ports).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Remove a backend from a VIP; its flows move to the other backends.
    Rm {
        #[command(flatten)]
        target: Target,
    },
    /// Set a backend's weight or state.
    Set {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        settings: BackendSettings,
    },
    /// Stop sending new flows to a backend; its existing flows continue.
    Drain {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Args)]
struct Target {
    /// The VIP's name.
    vip: String,
    /// The backend's address.
    address: IpAddr,
}

impl Target {
    fn path(&self) -> String {
        format!("/api/vips/{}/backends/{}", self.vip, self.address)
    }

    fn text(&self) -> String {
        format!("backend {} of VIP {:?}", self.address, self.vip)
    }
}

#[derive(Debug, Args)]
struct BackendSettings {
    /// Relative share of new flows, 0 to 1000 (0 drains) [default: 1].
    #[arg(long)]
    weight: Option<u32>,
    /// active takes new flows; drain only keeps its flows; disabled takes nothing [default: active].
    #[arg(long, value_parser = ["active", "drain", "disabled"])]
    state: Option<String>,
}

impl BackendSettings {
    fn change(&self) -> BackendChange {
        BackendChange {
            weight: self.weight,
            state: self.state.clone(),
            ..BackendChange::default()
        }
    }
}

fn body(change: &BackendChange) -> anyhow::Result<Payload> {
    Ok(Payload::Json(serde_json::to_value(change)?))
}

pub fn run(args: BackendArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client);
    let json = args.client.json;
    match args.command {
        BackendCommand::Add {
            target,
            settings,
            port,
        } => {
            let change = BackendChange {
                address: Some(target.address),
                port,
                ..settings.change()
            };
            let path = format!("/api/vips/{}/backends", target.vip);
            let answer: Value = client.post(&path, body(&change)?)?;
            report(json, &answer, &format!("{} added", target.text()))?;
        }
        BackendCommand::Rm { target } => {
            let answer: Value = client.delete(&target.path())?;
            report(json, &answer, &format!("{} removed", target.text()))?;
        }
        BackendCommand::Set { target, settings } => {
            let patch = settings.change();
            if patch == BackendChange::default() {
                anyhow::bail!(
                    "nothing to set for {}: give --weight or --state",
                    target.text()
                );
            }
            let answer: Value = client.patch(&target.path(), body(&patch)?)?;
            report(json, &answer, &format!("{} changed", target.text()))?;
        }
        BackendCommand::Drain { target } => {
            let answer: Value =
                client.call(Method::POST, &format!("{}/drain", target.path()), &[], None)?;
            report(json, &answer, &format!("{} draining", target.text()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
