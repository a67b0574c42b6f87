//! Machine-readable data-plane results: `target/bench/dataplane.json`,
//! `{"machine", "paths": [{"name", "method", "ns_per_packet",
//! "floor_ns_per_packet", "mpps"}]}`, live-frames paths with
//! "share_of_floor" too. Each path's floor is the one measured in the same
//! run by the same method. The packet-cost bench (in
//! tula-dataplane) leaves its paths in `target/bench/packet_cost.json`; the
//! data-plane bench adds the live-frames paths, writes the whole file and
//! judges issue 13's targets on it ([`judge_targets`]).

use std::path::PathBuf;

use serde_json::{json, Value};

/// One timed path.
#[derive(Debug, Clone, PartialEq)]
pub struct PathResult {
    pub name: String,
    /// "packet_cost" (BPF_PROG_TEST_RUN, repeat = 1) or "live_frames".
    pub method: &'static str,
    pub ns_per_packet: f64,
    pub floor_ns_per_packet: f64,
    pub mpps: f64,
    /// Live frames: packets delivered over the floor's, per round against the
    /// floor run made just before, the median over rounds (the bench table's
    /// ratio). Medians of pairs, so it differs a little from the two medians'
    /// ratio.
    pub share_of_floor: Option<f64>,
}

impl PathResult {
    fn to_json(&self) -> Value {
        let mut path = json!({
            "name": self.name,
            "method": self.method,
            "ns_per_packet": round(self.ns_per_packet),
            "floor_ns_per_packet": round(self.floor_ns_per_packet),
            "mpps": round(self.mpps),
        });
        // Not rounded: a target is judged on it, and 0.3497 must not read 0.35.
        if let Some(share) = self.share_of_floor {
            path["share_of_floor"] = json!(share);
        }
        path
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `target/bench` of the workspace (or of `CARGO_TARGET_DIR`).
pub fn bench_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    target.join("bench")
}

/// The document for `machine` and `paths`, packet-cost paths from `packet_cost` (that file's JSON) first.
pub fn document(machine: &str, packet_cost: Option<&Value>, paths: &[PathResult]) -> Value {
    let mut all: Vec<Value> = packet_cost
        .and_then(|doc| doc.get("paths"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    all.extend(paths.iter().map(PathResult::to_json));
    json!({ "machine": machine, "paths": all })
}

/// Writes `dataplane.json` into [`bench_dir`], with the packet-cost paths if
/// that bench ran before; returns the path written and the document.
pub fn write_dataplane(machine: &str, paths: &[PathResult]) -> std::io::Result<(PathBuf, Value)> {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let packet_cost = std::fs::read_to_string(dir.join("packet_cost.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    let doc = document(machine, packet_cost.as_ref(), paths);
    let path = dir.join("dataplane.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok((path, doc))
}

/// How one of issue 13's targets is judged on a path (or two) of the document.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// ns per packet at most this many times the floor's.
    TimesFloorAtMost(f64),
    /// packets per second at least this share of the floor's.
    ShareOfFloorAtLeast(f64),
    /// ns per packet at most this many ns over the floor's.
    NsOverFloorAtMost(f64),
    /// packets per second of the CPUs together at least this many times one CPU's.
    TimesOneCpuAtLeast(f64),
}

/// Issue 13's targets: the path's name in the document, and its rule.
const TARGETS: [(&str, Rule); 7] = [
    ("new flow", Rule::TimesFloorAtMost(4.0)),
    (
        "syn flood (new flows), L3 DSR",
        Rule::ShareOfFloorAtLeast(0.35),
    ),
    (
        "established, full table, L3 DSR",
        Rule::ShareOfFloorAtLeast(0.5),
    ),
    (
        "1000 vips x 100 backends, 100k flows",
        Rule::ShareOfFloorAtLeast(0.35),
    ),
    (
        "non-vip packet, in-kernel repeat",
        Rule::NsOverFloorAtMost(10.0),
    ),
    ("established, full table", Rule::TimesOneCpuAtLeast(1.8)),
    ("syn flood", Rule::TimesOneCpuAtLeast(1.8)),
];

/// One target judged on one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub path: String,
    pub target: String,
    /// The run's figure, or None if the document has no such path.
    pub figure: Option<String>,
    pub met: Option<bool>,
}

/// Issue 13's targets judged on `doc` (a dataplane.json document).
pub fn judge_targets(doc: &Value) -> Vec<Verdict> {
    let paths = doc["paths"].as_array().cloned().unwrap_or_default();
    // (ns per packet, the floor's, Mpps) of the first path whose name passes `wanted`.
    let find = |wanted: &dyn Fn(&str) -> bool| {
        let path = paths
            .iter()
            .find(|p| p["name"].as_str().is_some_and(wanted))?;
        let value = |key: &str| path[key].as_f64();
        Some((
            value("ns_per_packet")?,
            value("floor_ns_per_packet")?,
            value("mpps")?,
        ))
    };
    // Its share of the floor: as the bench table gives it, else the medians' ratio.
    let share = |name: &str| {
        let path = paths.iter().find(|p| p["name"] == name)?;
        path["share_of_floor"].as_f64().or_else(|| {
            Some(path["floor_ns_per_packet"].as_f64()? / path["ns_per_packet"].as_f64()?)
        })
    };
    TARGETS
        .iter()
        .map(|&(name, rule)| {
            let named = |n: &str| n == name;
            // (what the path is, the target, and the run's figure with its verdict)
            let (path, target, judged) = match rule {
                Rule::TimesFloorAtMost(most) => (
                    format!("{name} (packet_cost)"),
                    format!("<= {most:.1}x the floor"),
                    find(&named)
                        .map(|(ns, floor, _)| (format!("{:.2}x", ns / floor), ns / floor <= most)),
                ),
                Rule::ShareOfFloorAtLeast(least) => (
                    format!("{name} (live frames)"),
                    format!(">= {least:.2} of the floor"),
                    share(name).map(|share| (format!("{share:.4}"), share >= least)),
                ),
                Rule::NsOverFloorAtMost(most) => (
                    format!("{name} (packet_cost)"),
                    format!("<= {most:.0} ns over the floor"),
                    find(&named).map(|(ns, floor, _)| {
                        let over = ns - floor;
                        (
                            format!("{over:+.1} ns ({ns:.1} against {floor:.1})"),
                            over <= most,
                        )
                    }),
                ),
                Rule::TimesOneCpuAtLeast(least) => {
                    let one = format!("{name}, 1 cpu");
                    let prefix = format!("{name}, ");
                    // "NAME, N cpus": every CPU of the machine at once.
                    let all = |n: &str| {
                        n.strip_prefix(&prefix)
                            .is_some_and(|c| c.ends_with(" cpus"))
                    };
                    let judged =
                        find(&|n| n == one)
                            .zip(find(&all))
                            .map(|((_, _, one), (_, _, all))| {
                                (format!("{:.2}x", all / one), all / one >= least)
                            });
                    (
                        format!("{name}, all CPUs against 1 (live frames)"),
                        format!(">= {least:.1}x"),
                        judged,
                    )
                }
            };
            Verdict {
                path,
                target,
                met: judged.as_ref().map(|(_, met)| *met),
                figure: judged.map(|(figure, _)| figure),
            }
        })
        .collect()
}

/// Prints `verdicts` as a table.
pub fn print_targets(verdicts: &[Verdict]) {
    println!("\nissue 13's targets, judged on this run (target/bench/dataplane.json):");
    for v in verdicts {
        let (figure, met) = match (&v.figure, v.met) {
            (Some(figure), Some(true)) => (figure.as_str(), "met"),
            (Some(figure), _) => (figure.as_str(), "NOT MET"),
            _ => ("-", "not measured in this run"),
        };
        println!("  {:<56} {:>32}   {:<24} {met}", v.path, figure, v.target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_every_field_and_keeps_packet_cost_paths_first() {
        let packet_cost = json!({"paths": [{"name": "new flow", "method": "packet_cost",
            "ns_per_packet": 100.0, "floor_ns_per_packet": 40.0, "mpps": 10.0}]});
        let live = PathResult {
            name: "syn flood".into(),
            method: "live_frames",
            ns_per_packet: 200.0,
            floor_ns_per_packet: 150.0,
            mpps: 5.0,
            share_of_floor: Some(0.34996),
        };
        let doc = document("2 cores", Some(&packet_cost), &[live]);
        assert_eq!(doc["machine"], "2 cores");
        let paths = doc["paths"].as_array().unwrap();
        assert_eq!(paths.len(), 2);
        assert_eq!(paths[0]["name"], "new flow");
        for key in [
            "name",
            "method",
            "ns_per_packet",
            "floor_ns_per_packet",
            "mpps",
        ] {
            assert!(paths[1].get(key).is_some(), "{key} missing");
        }
        assert_eq!(paths[1]["method"], "live_frames");
        // Unrounded: at 3 decimals it would read 0.35, on the other side of a target.
        assert_eq!(paths[1]["share_of_floor"], 0.34996);
        assert!(paths[0].get("share_of_floor").is_none());
        assert_eq!(document("m", None, &[])["paths"], json!([]));
    }

    #[test]
    fn targets_are_judged_on_the_runs_own_floors() {
        let path = |name: &str, ns: f64, floor: f64| json!({"name": name, "method": "m", "ns_per_packet": ns, "floor_ns_per_packet": floor, "mpps": 1e3 / ns});
        let doc = json!({"machine": "m", "paths": [
            path("new flow", 330.0, 80.0),
            path("syn flood (new flows), L3 DSR", 600.0, 200.0),
            path("established, full table, L3 DSR", 400.0, 200.0),
            // The paired rounds' share decides over the medians' 0.40.
            json!({"name": "1000 vips x 100 backends, 100k flows", "ns_per_packet": 500.0,
                "floor_ns_per_packet": 200.0, "mpps": 2.0, "share_of_floor": 0.3449}),
            path("non-vip packet, in-kernel repeat", 41.0, 30.0),
            path("established, full table, 1 cpu", 400.0, 200.0),
            path("established, full table, 2 cpus", 210.0, 100.0),
        ]});
        let verdicts = judge_targets(&doc);
        let met: Vec<Option<bool>> = verdicts.iter().map(|v| v.met).collect();
        // 4.12x; 0.333; 0.500; 0.345; +11 ns; 1.90x; no SYN flood rows.
        assert_eq!(
            met,
            [
                Some(false),
                Some(false),
                Some(true),
                Some(false),
                Some(false),
                Some(true),
                None
            ]
        );
        assert_eq!(verdicts[0].figure.as_deref(), Some("4.12x"));
        assert_eq!(verdicts[3].figure.as_deref(), Some("0.3449"));
        assert_eq!(
            verdicts[4].figure.as_deref(),
            Some("+11.0 ns (41.0 against 30.0)")
        );
        assert_eq!(verdicts[5].figure.as_deref(), Some("1.90x"));
        assert!(judge_targets(&json!({})).iter().all(|v| v.met.is_none()));
    }

    #[test]
    fn every_live_frames_target_names_a_path_the_bench_writes() {
        use crate::throughput::{JSON_NAMES, SCALING_NAMES};
        for (name, rule) in TARGETS {
            match rule {
                Rule::ShareOfFloorAtLeast(_) => assert!(JSON_NAMES.contains(&name), "{name}"),
                Rule::TimesOneCpuAtLeast(_) => assert!(SCALING_NAMES.contains(&name), "{name}"),
                // packet_cost's names are written by crates/tula-dataplane/benches/packet_cost.rs.
                Rule::TimesFloorAtMost(_) | Rule::NsOverFloorAtMost(_) => {}
            }
        }
    }
}
