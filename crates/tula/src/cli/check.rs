//! `tula check -f FILE`: a config file checked without a daemon, like
//! `nginx -t` or `haproxy -c`: every problem with its path, then (unless
//! `--no-host`) this host's readiness to run it. Exit status 0: fine (warnings
//! allowed); 1: problems in the file or a FAIL on the host; 2: could not check.

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use tula_config::{Config, ConfigError, HostFacts};
use tula_doctor::{any_failed, findings_text, host_checks, Finding, Stage};

use super::client::print_json;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file (TOML); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = tula_config::DEFAULT_CONFIG_PATH)]
    file: PathBuf,
    /// Check only the file, not this host (for a file meant for another machine).
    #[arg(long)]
    no_host: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    file: String,
    /// True when exit status is 0.
    ok: bool,
    /// Problems in the file, each with its path (`vips[web].backends[1].weight`).
    problems: Vec<ConfigError>,
    /// The host checks (empty with --no-host or when the file does not parse).
    host: Vec<Finding>,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let text = read(&args.file)?;
    let name = args.file.display().to_string();
    let (config, problems) = match Config::from_toml_str(&text) {
        Ok(config) => {
            let facts = if args.no_host {
                HostFacts::default()
            } else {
                tula_control::host_facts()
                    .context("reading this host's interfaces and addresses")?
            };
            let problems = config
                .validate(&facts)
                .err()
                .map(|e| e.errors)
                .unwrap_or_default();
            (Some(config), problems)
        }
        Err(errors) => (None, errors.errors),
    };
    let host = match (&config, args.no_host) {
        (Some(config), false) => host_checks(config, Stage::Offline),
        _ => Vec::new(),
    };
    let ok = problems.is_empty() && !any_failed(&host);
    let report = Report {
        file: name,
        ok,
        problems,
        host,
    };
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", report_text(&report));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the config from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

fn report_text(report: &Report) -> String {
    let mut out = String::new();
    match report.problems.len() {
        0 => out.push_str(&format!("{}: the file is valid\n", report.file)),
        n => {
            let noun = if n == 1 { "problem" } else { "problems" };
            out.push_str(&format!("{}: {n} {noun} in the file\n", report.file));
            for problem in &report.problems {
                out.push_str(&format!("  {problem}\n"));
            }
        }
    }
    if !report.host.is_empty() {
        out.push_str("this host:\n");
        out.push_str(&findings_text(&report.host));
    }
    let failed = report
        .host
        .iter()
        .filter(|f| f.verdict == tula_doctor::Verdict::Fail)
        .count();
    out.push_str(&match (report.ok, failed) {
        (true, _) => "check: ok\n".to_string(),
        (false, 0) => "check: failed (problems in the file)\n".to_string(),
        (false, n) => format!(
            "check: failed ({} problems in the file, {n} FAIL on this host)\n",
            report.problems.len()
        ),
    });
    out
}
