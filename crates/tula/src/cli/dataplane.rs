//! `tula dataplane unload`: remove the pinned balancer (programs, links, maps).

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
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
