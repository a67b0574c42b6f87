//! `tula dataplane status`: the map layout (ABI) of the pinned balancer and of
//! this build. `tula dataplane unload`: remove the pinned balancer (programs,
//! links, maps).

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tula_config::Config;
use tula_dataplane::Dataplane;

#[derive(Debug, Args)]
pub struct DataplaneArgs {
    #[command(subcommand)]
    command: DataplaneCommand,
}

#[derive(Debug, Subcommand)]
enum DataplaneCommand {
    /// Show the map layout (ABI) version of the pinned balancer and of this
    /// build, and whether this build adopts the pinned maps as they are.
    /// Reads the pins only: safe while the daemon runs.
    Status {
        /// The config whose pin_dir to read.
        #[arg(long, default_value = tula_config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Read the balancer pinned here instead of the config's pin_dir.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Detach the balancer from every interface and remove its program and maps:
    /// forwarding stops. Stop `tula serve` first.
    Unload {
        /// The config whose pin_dir to unload.
        #[arg(long, default_value = tula_config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Unload the balancer pinned here instead of the config's pin_dir.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
    },
}

pub fn run(args: DataplaneArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DataplaneCommand::Status {
            config,
            pin_dir,
            json,
        } => {
            let pin_dir = match pin_dir {
                Some(dir) => dir,
                None => pin_dir_of(&config)?,
            };
            status(&pin_dir, json)?;
        }
        DataplaneCommand::Unload { config, pin_dir } => {
            let pin_dir = match pin_dir {
                Some(dir) => dir,
                None => pin_dir_of(&config)?,
            };
            if !pin_dir.exists() {
                println!(
                    "nothing to unload: no balancer is pinned in {}",
                    pin_dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let dataplane = Dataplane::open_pinned(&pin_dir)
                .with_context(|| format!("opening the balancer pinned in {}", pin_dir.display()))?;
            let interfaces = dataplane.attached();
            dataplane.teardown().with_context(|| {
                format!("unloading the balancer pinned in {}", pin_dir.display())
            })?;
            let detached = if interfaces.is_empty() {
                "it was attached to no interface".to_string()
            } else {
                format!("detached it from {}", interfaces.join(", "))
            };
            println!(
                "unloaded the balancer pinned in {}: {detached}, removed its program and maps; nothing forwards any more",
                pin_dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status(pin_dir: &Path, json: bool) -> anyhow::Result<()> {
    let pinned = tula_dataplane::pinned_build(pin_dir)
        .with_context(|| format!("reading the balancer pinned in {}", pin_dir.display()))?;
    let this_build = tula_dataplane::abi::LAYOUT_VERSION;
    let verdict = match &pinned {
        None => "nothing is pinned: the daemon loads this build's data plane at start".to_string(),
        Some(p) if p.matches_this_build() => {
            "the pinned maps have this build's layout: the daemon adopts them as they are".to_string()
        }
        Some(p) if tula_dataplane::converts_from(p.layout_version) => format!(
            "the pinned maps have layout {}, this build reads {this_build}: at start the daemon moves \
             them onto this build, keeping flows and counters",
            p.layout_version
        ),
        Some(p) => format!(
            "the pinned maps have layout {}, this build reads {this_build} and cannot convert them: \
             the daemon refuses to adopt them; `tula dataplane unload` (which drops every \
             connection) and a start load this build's",
            p.layout_version
        ),
    };
    if json {
        let pinned_json = pinned.as_ref().map(|p| {
            serde_json::json!({
                "layout_version": p.layout_version,
                "ring_size": p.ring_size,
                "interfaces": p.interfaces,
            })
        });
        let value = serde_json::json!({
            "pin_dir": pin_dir,
            "pinned": pinned_json,
            "build": { "version": env!("CARGO_PKG_VERSION"), "layout_version": this_build },
            "matches": pinned.as_ref().map(|p| p.matches_this_build()),
            "verdict": verdict,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("pin_dir     {}", pin_dir.display());
    match &pinned {
        None => println!("pinned      nothing"),
        Some(p) => {
            let ring = p
                .ring_size
                .map_or("not recorded".to_string(), |r| r.to_string());
            let interfaces = if p.interfaces.is_empty() {
                "none".to_string()
            } else {
                p.interfaces.join(", ")
            };
            println!(
                "pinned      layout version {}, ring_size {ring}, attached to {interfaces}",
                p.layout_version
            );
        }
    }
    println!(
        "this build  tula {}, layout version {this_build}",
        env!("CARGO_PKG_VERSION")
    );
    println!("verdict     {verdict}");
    Ok(())
}

/// The config's pin_dir, or the default one if there is no config file.
fn pin_dir_of(path: &PathBuf) -> anyhow::Result<PathBuf> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let config = Config::from_toml_str(&text).map_err(|errors| {
                anyhow::anyhow!("{} does not decode:\n{errors}", path.display())
            })?;
            Ok(config.pin_dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default().pin_dir),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
