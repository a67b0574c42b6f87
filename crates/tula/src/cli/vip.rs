//! `tula vip list|show|add|set|rm`: VIPs, through the daemon's API.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::process::ExitCode;
use tula_config::Vip;

use super::client::{print_json, revision_of, Client, ClientArgs, Payload};

#[derive(Debug, Args)]
pub struct VipArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: VipCommand,
}

#[derive(Debug, Subcommand)]
enum VipCommand {
    /// One line per VIP of the running config.
    List,
    /// A VIP as TOML, as it would appear in the config file.
    Show {
        /// The VIP's name.
        name: String,
    },
    /// Add a VIP (then add backends with `tula backend add`).
    Add {
        /// The VIP's name: a letter, then letters, digits, '-', '_' or '.'.
        name: String,
        #[command(flatten)]
        settings: VipSettings,
    },
    /// Change some settings of a VIP; the others stay.
    Set {
        /// The VIP's name.
        name: String,
        #[command(flatten)]
        settings: VipSettings,
    },
    /// Remove a VIP and all its backends.
    Rm {
        /// The VIP's name.
        name: String,
    },
}

#[derive(Debug, Args)]
struct VipSettings {
    /// The address clients connect to.
    #[arg(long)]
    address: Option<IpAddr>,
    /// The port (0 = all ports) [default: 0].
    #[arg(long)]
    port: Option<u16>,
    #[arg(long, value_parser = ["tcp", "udp"])]
    protocol: Option<String>,
    /// Layer 2 (MAC rewrite) or Layer 3 (IPIP tunnel) Direct Server Return [default: l3-ipip].
    #[arg(long, value_parser = ["l2", "l3-ipip"])]
    dsr_type: Option<String>,
    #[arg(long, value_parser = ["maglev", "source-hash", "round-robin", "weighted-round-robin"])]
    scheduler: Option<String>,
    /// New flows when no backend is up [default: drop].
    #[arg(long, value_parser = ["drop", "keep-last", "sorry"])]
    all_down: Option<String>,
    /// The backend that takes every flow when all others are down (with --all-down sorry).
    #[arg(long)]
    sorry_backend: Option<IpAddr>,
    /// A backend's address, weight 1 (repeat for more; only for `add`).
    #[arg(long = "backend", value_name = "ADDR")]
    backends: Vec<IpAddr>,
}

impl VipSettings {
    /// The settings given on the command line, as JSON keys of a VIP.
    fn to_json(&self) -> Map<String, Value> {
        let mut keys = Map::new();
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                keys.insert(key.to_string(), value);
            }
        };
        set("address", self.address.map(|a| json!(a)));
        set("port", self.port.map(|p| json!(p)));
        set("protocol", self.protocol.as_ref().map(|p| json!(p)));
        set("dsr_type", self.dsr_type.as_ref().map(|d| json!(d)));
        set("scheduler", self.scheduler.as_ref().map(|s| json!(s)));
        set("all_down", self.all_down.as_ref().map(|a| json!(a)));
        set("sorry_backend", self.sorry_backend.map(|a| json!(a)));
        if !self.backends.is_empty() {
            let backends: Vec<Value> = self
                .backends
                .iter()
                .map(|a| json!({ "address": a }))
                .collect();
            set("backends", Some(Value::Array(backends)));
        }
        keys
    }
}

pub fn run(args: VipArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client);
    let json = args.client.json;
    match args.command {
        VipCommand::List => {
            let vips: Vec<Vip> = client.get("/api/vips")?;
            if json {
                print_json(&vips)?;
            } else {
                print!("{}", vip_table(&vips));
            }
        }
        VipCommand::Show { name } => {
            let vip: Vip = client.get(&format!("/api/vips/{name}"))?;
            if json {
                print_json(&vip)?;
            } else {
                print!("{}", vip_toml(&vip));
            }
        }
        VipCommand::Add { name, settings } => {
            if settings.address.is_none() {
                anyhow::bail!("VIP {name:?} needs an address: tula vip add {name} --address ADDR");
            }
            let mut body = settings.to_json();
            body.insert("name".into(), json!(name));
            let answer: Value = client.post("/api/vips", Payload::Json(Value::Object(body)))?;
            report(json, &answer, &format!("VIP {name:?} added"))?;
        }
        VipCommand::Set { name, settings } => {
            if !settings.backends.is_empty() {
                anyhow::bail!(
                    "--backend is only for `tula vip add`; use `tula backend add {name} ADDR`"
                );
            }
            let patch = settings.to_json();
            if patch.is_empty() {
                anyhow::bail!("nothing to set for VIP {name:?}: give at least one setting (see tula vip set --help)");
            }
            let answer: Value = client.patch(
                &format!("/api/vips/{name}"),
                Payload::Json(Value::Object(patch)),
            )?;
            report(json, &answer, &format!("VIP {name:?} changed"))?;
        }
        VipCommand::Rm { name } => {
            let answer: Value = client.delete(&format!("/api/vips/{name}"))?;
            report(json, &answer, &format!("VIP {name:?} removed"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what a change did: the daemon's answer with --json, else `WHAT (revision N)`.
pub fn report(json: bool, answer: &Value, what: &str) -> anyhow::Result<()> {
    if json {
        print_json(answer)
    } else {
        println!("{what} ({})", revision_of(answer));
        Ok(())
    }
}

fn vip_table(vips: &[Vip]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "ADDRESS".to_string(),
        "PROT".to_string(),
        "DSR".to_string(),
        "SCHEDULER".to_string(),
        "BACKENDS".to_string(),
    ]];
    for vip in vips {
        rows.push([
            vip.name.clone(),
            socket_text(vip.address, vip.port),
            vip.protocol.to_string().to_uppercase(),
            enum_text(&vip.dsr_type),
            enum_text(&vip.scheduler),
            vip.backends.len().to_string(),
        ]);
    }
    super::status::table(&rows)
}

/// A VIP as a `[[vip]]` table of the config file.
fn vip_toml(vip: &Vip) -> String {
    #[derive(serde::Serialize)]
    struct Wrapper<'a> {
        vip: [&'a Vip; 1],
    }
    toml::to_string(&Wrapper { vip: [vip] })
        .unwrap_or_else(|e| format!("# cannot show as TOML: {e}\n"))
}

/// `203.0.113.10:80`, `[2001:db8::1]:80`, or `203.0.113.10:*` for all ports.
pub fn socket_text(address: IpAddr, port: u16) -> String {
    let port = if port == 0 {
        "*".to_string()
    } else {
        port.to_string()
    };
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// A config enum as the config file spells it (`l3-ipip`, `source-hash`, `drain`).
pub fn enum_text(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}
