//! `tula apply -f FILE` and `tula diff -f FILE`: send a whole config (TOML, read
//! here) to the daemon, to Save and apply it or to see what would change.

use anyhow::Context;
use clap::Args;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use ureq::http::Method;

use super::client::{print_json, Client, ClientArgs, Payload};
use tula_client::{Diff, Revision};

#[derive(Debug, Args)]
pub struct FileArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The config file (TOML, like /etc/tula/tula.toml); `-` reads standard input.
    /// A first line `# running revision N` (as `tula config show` writes it)
    /// names the revision the file was based on: if another change was made
    /// since, apply refuses it (see --force).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    /// Apply even if the file is based on an older revision than the running one.
    #[arg(long)]
    force: bool,
}

impl FileArgs {
    fn read(&self) -> anyhow::Result<String> {
        if self.file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the config from standard input")?;
            return Ok(text);
        }
        std::fs::read_to_string(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))
    }
}

/// Save and apply: validated and programmed by the daemon as one transaction.
pub fn apply(args: FileArgs) -> anyhow::Result<ExitCode> {
    let text = args.read()?;
    let source = format!("apply -f {}", args.file.display());
    let revision: Revision = Client::new(&args.client)
        .call(
            Method::PUT,
            "/api/config",
            &[
                ("source", source.as_str()),
                ("force", if args.force { "true" } else { "false" }),
            ],
            Some(Payload::Toml(text)),
        )
        .with_context(|| format!("applying {}", args.file.display()))?;
    if args.client.json {
        print_json(&revision)?;
    } else {
        print!("{}", revision.applied_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// What applying the file would change: `+` added, `-` removed, `~` changed.
pub fn diff(args: FileArgs) -> anyhow::Result<ExitCode> {
    let text = args.read()?;
    let diff: Diff = Client::new(&args.client)
        .post("/api/config/diff", Payload::Toml(text))
        .with_context(|| format!("comparing {} with the running config", args.file.display()))?;
    if args.client.json {
        print_json(&diff)?;
    } else if diff.changes.is_empty() {
        println!(
            "no changes: {} matches the running config",
            args.file.display()
        );
    } else {
        for change in &diff.changes {
            println!("{}", change.line());
        }
    }
    Ok(ExitCode::SUCCESS)
}
