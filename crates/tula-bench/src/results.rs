//! Machine-readable data-plane results: `target/bench/dataplane.json`,
//! `{"machine", "paths": [{"name", "method", "ns_per_packet",
//! "floor_ns_per_packet", "mpps"}]}`. Each path's floor is the one measured
//! in the same run by the same method. The packet-cost bench (in
//! tula-dataplane) leaves its paths in `target/bench/packet_cost.json`; the
//! data-plane bench adds the live-frames paths and writes the whole file.

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
}

impl PathResult {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "method": self.method,
            "ns_per_packet": round(self.ns_per_packet),
            "floor_ns_per_packet": round(self.floor_ns_per_packet),
            "mpps": round(self.mpps),
        })
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
/// that bench ran before; returns the path written.
pub fn write_dataplane(machine: &str, paths: &[PathResult]) -> std::io::Result<PathBuf> {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let packet_cost = std::fs::read_to_string(dir.join("packet_cost.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    let doc = document(machine, packet_cost.as_ref(), paths);
    let path = dir.join("dataplane.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(path)
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
        };
        let doc = document("2 cores", Some(&packet_cost), &[live]);
        assert_eq!(doc["machine"], "2 cores");
        let paths = doc["paths"].as_array().unwrap();
        assert_eq!(paths.len(), 2);
        assert_eq!(paths[0]["name"], "new flow");
        for key in ["name", "method", "ns_per_packet", "floor_ns_per_packet", "mpps"] {
            assert!(paths[1].get(key).is_some(), "{key} missing");
        }
        assert_eq!(paths[1]["method"], "live_frames");
        assert_eq!(document("m", None, &[])["paths"], json!([]));
    }
}
