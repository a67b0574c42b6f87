//! `tula backend add|rm|set|drain VIP ADDR`: a VIP's backends, through the daemon's API.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::process::ExitCode;

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
    fn to_json(&self) -> Map<String, Value> {
        let mut keys = Map::new();
        if let Some(weight) = self.weight {
            keys.insert("weight".into(), json!(weight));
        }
        if let Some(state) = &self.state {
            keys.insert("state".into(), json!(state));
        }
        keys
    }
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
            let mut body = settings.to_json();
            body.insert("address".into(), json!(target.address));
            if let Some(port) = port {
                body.insert("port".into(), json!(port));
            }
            let path = format!("/api/vips/{}/backends", target.vip);
            let answer: Value = client.post(&path, Payload::Json(Value::Object(body)))?;
            report(json, &answer, &format!("{} added", target.text()))?;
        }
        BackendCommand::Rm { target } => {
            let answer: Value = client.delete(&target.path())?;
            report(json, &answer, &format!("{} removed", target.text()))?;
        }
        BackendCommand::Set { target, settings } => {
            let patch = settings.to_json();
            if patch.is_empty() {
                anyhow::bail!(
                    "nothing to set for {}: give --weight or --state",
                    target.text()
                );
            }
            let answer: Value =
                client.patch(&target.path(), Payload::Json(Value::Object(patch)))?;
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
