//! The data plane's numbers for VIPs and backends.
//!
//! A VIP id (an index into `vip_stats`, below `max_vips`) belongs to a VIP
//! name; a backend id (an index into `backends`, below `max_backends`)
//! belongs to one (VIP name, backend address) pair. The connection table
//! stores backend ids, so the assignment is saved in `state_dir/ids.json` and
//! a restarted daemon reuses it. Ids never used come first; freed ids are
//! reused oldest-freed first and only when no unused id is left, so a stale
//! connection entry is unlikely to find its old id serving a new backend.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tula_config::Config;

use crate::files::{read_if_exists, write_atomic};
use crate::ControlError;

/// Ids handed out to one kind of object, by the object's key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Pool {
    assigned: BTreeMap<String, u32>,
    /// Freed ids, oldest first.
    freed: VecDeque<u32>,
    /// Ids from here up have never been handed out.
    next: u32,
}

impl Pool {
    /// Frees the ids of keys not in `wanted`, then gives every wanted key
    /// without one an id below `limit`.
    fn assign(&mut self, wanted: &[String], limit: u32, kind: &str) -> Result<(), String> {
        let keep: BTreeSet<&String> = wanted.iter().collect();
        let gone: Vec<String> = self
            .assigned
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in gone {
            let id = self.assigned.remove(&key).expect("listed above");
            self.freed.push_back(id);
        }
        for key in wanted {
            if self.assigned.contains_key(key) {
                continue;
            }
            let id = if self.next < limit {
                self.next += 1;
                self.next - 1
            } else {
                // Freed ids at or above a lowered limit stay freed but unused.
                let position = self
                    .freed
                    .iter()
                    .position(|&id| id < limit)
                    .ok_or_else(|| {
                        format!("no free {kind} id for {key}: all {limit} are in use")
                    })?;
                self.freed.remove(position).expect("found above")
            };
            self.assigned.insert(key.clone(), id);
        }
        Ok(())
    }
}

/// The VIP and backend id assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ids {
    vips: Pool,
    backends: Pool,
}

impl Ids {
    pub(crate) fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("ids.json")
    }

    /// The saved assignment, or an empty one if none was saved.
    pub(crate) fn load(state_dir: &Path) -> Result<Ids, ControlError> {
        let path = Self::path(state_dir);
        match read_if_exists(&path)? {
            None => Ok(Ids::default()),
            Some(text) => serde_json::from_str(&text).map_err(|e| ControlError::Io {
                what: format!("decoding {}", path.display()),
                source: e.into(),
            }),
        }
    }

    pub(crate) fn save(&self, state_dir: &Path) -> Result<(), ControlError> {
        let text = serde_json::to_vec_pretty(self).expect("ids always encode");
        write_atomic(&Self::path(state_dir), &text)
    }

    /// The assignment for `config`: ids of VIPs and backends no longer in it
    /// are freed, new ones get ids below `max_vips` / `max_backends`.
    pub(crate) fn assign(&self, config: &Config) -> Result<Ids, String> {
        let mut ids = self.clone();
        let vips: Vec<String> = config.vips.iter().map(|v| v.name.clone()).collect();
        // A VIP's sorry backend is one more backend of it (validation keeps it apart from the others).
        let backends: Vec<String> = config
            .vips
            .iter()
            .flat_map(|v| {
                let sorry = match v.all_down {
                    tula_config::AllDown::Sorry => v.sorry_backend,
                    _ => None,
                };
                v.backends
                    .iter()
                    .map(|b| b.address)
                    .chain(sorry)
                    .map(|address| backend_key(&v.name, &address))
            })
            .collect();
        ids.vips.assign(&vips, config.max_vips, "VIP")?;
        ids.backends
            .assign(&backends, config.max_backends, "backend")?;
        Ok(ids)
    }

    /// The id of VIP `name`, if it has one.
    pub(crate) fn vip(&self, name: &str) -> Option<u32> {
        self.vips.assigned.get(name).copied()
    }

    /// The id of backend `address` of VIP `vip`, if it has one.
    pub(crate) fn backend(&self, vip: &str, address: &std::net::IpAddr) -> Option<u32> {
        self.backends
            .assigned
            .get(&backend_key(vip, address))
            .copied()
    }
}

/// `VIP/ADDRESS`: VIP names cannot hold a `/`.
fn backend_key(vip: &str, address: &std::net::IpAddr) -> String {
    format!("{vip}/{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unused_ids_come_first_then_the_oldest_freed() {
        let mut pool = Pool::default();
        pool.assign(&keys(&["a", "b", "c"]), 5, "backend").unwrap();
        assert_eq!(pool.assigned["c"], 2);
        // b then a are freed; d and e take the never-used 3 and 4.
        pool.assign(&keys(&["a", "c"]), 5, "backend").unwrap();
        pool.assign(&keys(&["c", "d", "e"]), 5, "backend").unwrap();
        assert_eq!((pool.assigned["d"], pool.assigned["e"]), (3, 4));
        // Now the freed ones, in the order they were freed: b's 1, then a's 0.
        pool.assign(&keys(&["c", "d", "e", "f", "g"]), 5, "backend")
            .unwrap();
        assert_eq!((pool.assigned["f"], pool.assigned["g"]), (1, 0));
        let error = pool
            .assign(&keys(&["c", "d", "e", "f", "g", "h"]), 5, "backend")
            .unwrap_err();
        assert_eq!(error, "no free backend id for h: all 5 are in use");
    }

    #[test]
    fn existing_keys_keep_their_ids() {
        let mut pool = Pool::default();
        pool.assign(&keys(&["a", "b"]), 8, "VIP").unwrap();
        let before = pool.assigned.clone();
        pool.assign(&keys(&["b", "x", "a"]), 8, "VIP").unwrap();
        assert_eq!(pool.assigned["a"], before["a"]);
        assert_eq!(pool.assigned["b"], before["b"]);
    }

    #[test]
    fn a_lowered_limit_skips_freed_ids_above_it() {
        let mut pool = Pool::default();
        pool.assign(&keys(&["a", "b", "c", "d"]), 4, "backend")
            .unwrap();
        pool.assign(&keys(&["a"]), 4, "backend").unwrap();
        // freed: 1, 2, 3; with limit 3 only 1 and 2 can be handed out.
        pool.assign(&keys(&["a", "x", "y"]), 3, "backend").unwrap();
        assert_eq!((pool.assigned["x"], pool.assigned["y"]), (1, 2));
        assert!(pool
            .assign(&keys(&["a", "x", "y", "z"]), 3, "backend")
            .is_err());
    }
}
