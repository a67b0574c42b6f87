//! `tula stats [--watch [SECS]]`: the data plane's counters, as totals or as
//! rates per second between samples.

use clap::Args;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use super::client::{print_json, Client, ClientArgs};
use super::status::{table, Narrow};
use tula_client::VipStatus;

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    narrow: Narrow,
    /// Print rates per second every SECS seconds until interrupted [SECS default: 1].
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
    watch: Option<f64>,
    /// With --watch: stop after this many reports.
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
}

/// One reading of every counter the daemon reports.
struct Sample {
    at: Instant,
    counters: BTreeMap<String, u64>,
    status: Vec<VipStatus>,
}

impl Sample {
    fn take(client: &Client, narrow: &Narrow) -> anyhow::Result<Sample> {
        let counters: BTreeMap<String, u64> = client.get("/api/counters")?;
        let status = narrow.status(client)?;
        Ok(Sample {
            at: Instant::now(),
            counters,
            status,
        })
    }
}

pub fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client);
    let json = args.client.json;
    let Some(seconds) = args.watch else {
        let sample = Sample::take(&client, &args.narrow)?;
        if json {
            print_json(&json!({ "counters": sample.counters, "vips": sample.status }))?;
        } else {
            print!("{}", totals_text(&sample));
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        anyhow::bail!("--watch {seconds}: the interval must be a number of seconds above 0");
    }
    let mut before = Sample::take(&client, &args.narrow)?;
    let mut reports = 0;
    while args.count.is_none_or(|count| reports < count) {
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let now = Sample::take(&client, &args.narrow)?;
        let rates = Rates::between(&before, &now);
        if json {
            println!("{}", serde_json::to_string(&rates.to_json())?);
        } else {
            print!("{}", rates.text());
        }
        before = now;
        reports += 1;
    }
    Ok(ExitCode::SUCCESS)
}

fn totals_text(sample: &Sample) -> String {
    let mut rows = vec![["COUNTER".to_string(), "PACKETS".to_string()]];
    rows.extend(
        sample
            .counters
            .iter()
            .map(|(name, value)| [name.clone(), value.to_string()]),
    );
    let mut out = table(&rows);
    out.push('\n');
    let mut rows = vec![[
        "VIP".to_string(),
        "PACKETS".to_string(),
        "BYTES".to_string(),
    ]];
    for vip in &sample.status {
        rows.push([
            vip.name.clone(),
            vip.packets.to_string(),
            vip.bytes.to_string(),
        ]);
        for backend in &vip.backends {
            rows.push([
                format!("  -> {}", backend.address),
                backend.packets.to_string(),
                backend.bytes.to_string(),
            ]);
        }
    }
    out.push_str(&table(&rows));
    out
}

/// Growth per second between two samples.
struct Rates {
    seconds: f64,
    /// Counters that moved, by name.
    counters: Vec<(String, f64)>,
    vips: Vec<TrafficRate>,
}

/// Packets and bytes per second of a VIP, and of each of its backends.
struct TrafficRate {
    name: String,
    packets: f64,
    bytes: f64,
    backends: Vec<(IpAddr, f64, f64)>,
}

impl Rates {
    fn between(before: &Sample, now: &Sample) -> Rates {
        let seconds = now.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let rate = |now: u64, before: Option<u64>| {
            now.saturating_sub(before.unwrap_or(now)) as f64 / seconds
        };
        let counters = now
            .counters
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    rate(*value, before.counters.get(name).copied()),
                )
            })
            .filter(|(_, r)| *r > 0.0)
            .collect();
        let vips = now
            .status
            .iter()
            .map(|vip| {
                let earlier = before.status.iter().find(|v| v.name == vip.name);
                let backends = vip
                    .backends
                    .iter()
                    .map(|backend| {
                        let earlier = earlier
                            .and_then(|v| v.backends.iter().find(|b| b.address == backend.address));
                        (
                            backend.address,
                            rate(backend.packets, earlier.map(|b| b.packets)),
                            rate(backend.bytes, earlier.map(|b| b.bytes)),
                        )
                    })
                    .collect();
                TrafficRate {
                    name: vip.name.clone(),
                    packets: rate(vip.packets, earlier.map(|v| v.packets)),
                    bytes: rate(vip.bytes, earlier.map(|v| v.bytes)),
                    backends,
                }
            })
            .collect();
        Rates {
            seconds,
            counters,
            vips,
        }
    }

    fn text(&self) -> String {
        let time = humantime::format_rfc3339_seconds(SystemTime::now());
        let mut out = format!("--- {time}, per second over {:.1}s\n", self.seconds);
        let mut rows = vec![[
            "VIP".to_string(),
            "PACKETS/S".to_string(),
            "BYTES/S".to_string(),
        ]];
        for vip in &self.vips {
            rows.push([
                vip.name.clone(),
                format!("{:.1}", vip.packets),
                format!("{:.0}", vip.bytes),
            ]);
            for (address, packets, bytes) in &vip.backends {
                rows.push([
                    format!("  -> {address}"),
                    format!("{packets:.1}"),
                    format!("{bytes:.0}"),
                ]);
            }
        }
        out.push_str(&table(&rows));
        if self.counters.is_empty() {
            out.push_str("counters/s: none moved\n");
        } else {
            let moved: Vec<String> = self
                .counters
                .iter()
                .map(|(name, r)| format!("{name} {r:.1}"))
                .collect();
            out.push_str(&format!("counters/s: {}\n", moved.join("  ")));
        }
        out
    }

    fn to_json(&self) -> Value {
        let counters: Map<String, Value> = self
            .counters
            .iter()
            .map(|(n, r)| (n.clone(), json!(r)))
            .collect();
        let vips: Vec<Value> = self
            .vips
            .iter()
            .map(|vip| {
                let backends: Vec<Value> = vip
                    .backends
                    .iter()
                    .map(|(address, packets, bytes)| {
                        json!({ "address": address, "packets_per_second": packets, "bytes_per_second": bytes })
                    })
                    .collect();
                json!({
                    "name": vip.name,
                    "packets_per_second": vip.packets,
                    "bytes_per_second": vip.bytes,
                    "backends": backends,
                })
            })
            .collect();
        json!({
            "time": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            "seconds": self.seconds,
            "counters_per_second": counters,
            "vips": vips,
        })
    }
}
