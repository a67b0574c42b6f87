//! `tula config history|show [N]|rollback N`: the daemon's numbered revisions.

use clap::{Args, Subcommand};
use serde_json::Value;
use std::process::ExitCode;
use tula_client::{Revision, RevisionConfig, RevisionOf};
use tula_config::Config;
use ureq::http::Method;

use super::client::{print_json, Client, ClientArgs};
use super::status::table;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Every saved revision: number, time, what made it, how many changes (* = running).
    History,
    /// A revision's config as TOML (the token redacted); without N, the running config.
    Show { number: Option<u64> },
    /// Apply revision N's config again, as a new revision.
    Rollback { number: u64 },
}

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client);
    let json = args.client.json;
    match args.command {
        ConfigCommand::History => {
            let history: Vec<Revision> = client.get("/api/revisions")?;
            if json {
                return print_json(&history).map(|()| ExitCode::SUCCESS);
            }
            if history.is_empty() {
                println!("no revisions yet: apply a config with `tula apply -f FILE`");
                return Ok(ExitCode::SUCCESS);
            }
            let running: RevisionConfig<Value> = client.get("/api/config")?;
            let running = running.revision.map(|r| r.number());
            let mut rows = vec![["REV", "TIME", "CHANGES", "SOURCE"].map(str::to_string)];
            for revision in &history {
                let mark = if Some(revision.number) == running {
                    "*"
                } else {
                    ""
                };
                rows.push([
                    format!("{}{mark}", revision.number),
                    revision.time.clone(),
                    revision.summary.len().to_string(),
                    revision.source.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
        ConfigCommand::Show { number } => {
            let path = match number {
                Some(number) => format!("/api/revisions/{number}"),
                None => "/api/config".to_string(),
            };
            let shown: RevisionConfig<Config> = client.get(&path)?;
            if json {
                print_json(&shown)?;
            } else {
                let heading = match &shown.revision {
                    Some(RevisionOf::Record(info)) => {
                        format!("# revision {}, {}, {}\n", info.number, info.time, info.source)
                    }
                    Some(RevisionOf::Number(number)) => format!("# running revision {number}\n"),
                    None => String::new(),
                };
                print!("{heading}{}", shown.config.to_toml_string());
            }
        }
        ConfigCommand::Rollback { number } => {
            let revision: Revision = client.call(
                Method::POST,
                &format!("/api/revisions/{number}/rollback"),
                &[],
                None,
            )?;
            if json {
                print_json(&revision)?;
            } else {
                println!("rolled back to revision {number}");
                print!("{}", revision.applied_text());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
