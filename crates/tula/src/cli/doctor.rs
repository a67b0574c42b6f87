//! `tula doctor`: a running load balancer checked, each check PASS, WARN,
//! FAIL or SKIP with its fix. Runs on the balancer's host (in its network
//! namespace): the host checks read the kernel here, the rest asks the daemon.
//! Exit status 0: no FAIL; 1: a FAIL; 2: could not check.

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tula_config::Config;
use tula_doctor::{
    any_failed, findings_text, host_checks, replies_bypass, Finding, Stage, TrafficDelta, Verdict,
};

use super::client::{print_json, Client, ClientArgs};
use tula_client::{RevisionConfig, VipStatus};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Seconds of counters to compare for the "replies bypass the balancer" check (0 skips it).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    sample: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    findings: Vec<Finding>,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    if !(args.sample.is_finite() && args.sample >= 0.0) {
        anyhow::bail!(
            "--sample {}: give a number of seconds, 0 or more",
            args.sample
        );
    }
    let client = Client::new(&args.client);
    let running: RevisionConfig<Config> = client
        .get("/api/config")
        .context("reading the running config")?;
    let config = running.config;
    let mut findings = host_checks(&config, Stage::Running);
    let status: Vec<VipStatus> = client.get("/api/status")?;
    findings.extend(health_findings(&status));
    if args.sample > 0.0 {
        findings.push(replies_bypass(sample(&client, &config, args.sample)?));
    }
    let ok = !any_failed(&findings);
    if args.client.json {
        print_json(&Report { ok, findings })?;
    } else {
        print!("{}", findings_text(&findings));
        let failed = findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .count();
        println!(
            "doctor: {}",
            if ok {
                "no FAIL".to_string()
            } else {
                format!("{failed} FAIL")
            }
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A FAIL per backend its health check holds down, with the last result's cause.
fn health_findings(status: &[VipStatus]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut up = 0;
    for vip in status {
        for backend in &vip.backends {
            if backend.healthy {
                up += 1;
                continue;
            }
            let cause = backend
                .health
                .as_ref()
                .and_then(|h| h.last_result.as_ref())
                .map(|r| format!(": {} ({})", r.outcome, r.detail))
                .unwrap_or_default();
            findings.push(Finding::with(
                Verdict::Fail,
                "health",
                format!("{} of VIP {}", backend.address, vip.name),
                format!("down{cause}"),
                "fix the backend or its health check (`tula status`, docs/HEALTH.md)",
            ));
        }
    }
    if findings.is_empty() {
        findings.push(Finding::pass(
            "health",
            "backends",
            format!("all {up} backends up"),
        ));
    }
    findings
}

/// The DSR VIPs' counters and the interfaces' tx bytes, `seconds` apart.
fn sample(client: &Client, config: &Config, seconds: f64) -> anyhow::Result<TrafficDelta> {
    let read = || -> anyhow::Result<(u64, u64, u64)> {
        let status: Vec<VipStatus> = client.get("/api/status")?;
        let (packets, bytes) = status
            .iter()
            .fold((0, 0), |(p, b), v| (p + v.packets, b + v.bytes));
        let mut tx = 0;
        for ifname in &config.interfaces {
            tx += tula_net::link_stats(ifname)
                .map(|s| s.tx_bytes)
                .unwrap_or(0);
        }
        Ok((packets, bytes, tx))
    };
    let started = Instant::now();
    let before = read()?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let after = read()?;
    Ok(TrafficDelta {
        seconds: started.elapsed().as_secs_f64(),
        vip_packets: after.0.saturating_sub(before.0),
        vip_bytes: after.1.saturating_sub(before.1),
        tx_bytes: after.2.saturating_sub(before.2),
    })
}
