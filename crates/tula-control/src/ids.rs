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
use tula_config::{Config, Vip};

use crate::files::{read_if_exists, replace_unsynced};
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
    fn assign(&mut self, wanted: &[String], limit: u32, kind: IdKind) -> Result<(), CapacityError> {
        let keep: BTreeSet<&String> = wanted.iter().collect();
        let gone: Vec<String> = self
            .assigned
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        self.free(gone.iter());
        self.add(wanted.iter(), limit, kind)
    }

    fn free<'a>(&mut self, keys: impl Iterator<Item = &'a String>) {
        for key in keys {
            if let Some(id) = self.assigned.remove(key) {
                self.freed.push_back(id);
            }
        }
    }

    /// Gives every key without an id one below `limit`.
    fn add<'a>(
        &mut self,
        keys: impl Iterator<Item = &'a String>,
        limit: u32,
        kind: IdKind,
    ) -> Result<(), CapacityError> {
        for key in keys {
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
                    .ok_or_else(|| CapacityError {
                        kind,
                        key: key.clone(),
                        limit,
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

    /// Saves the assignment, not waiting for the disk: the ids only have to
    /// match the pinned maps, and a machine crash that could lose the file
    /// loses the maps too (the next start assigns ids for the config again).
    /// At 1,000 x 100 a sync cost a one-backend change ~10 ms.
    pub(crate) fn save(&self, state_dir: &Path) -> Result<(), ControlError> {
        let text = serde_json::to_vec(self).expect("ids always encode");
        replace_unsynced(&Self::path(state_dir), &text)
    }

    /// The assignment for `config`: ids of VIPs and backends no longer in it
    /// are freed, new ones get ids below the `limits` (the data plane's
    /// `max_vips` and `max_backends`).
    pub(crate) fn assign(&self, config: &Config, limits: Limits) -> Result<Ids, CapacityError> {
        let mut ids = self.clone();
        let vips: Vec<String> = config.vips.iter().map(|v| v.name.clone()).collect();
        let backends: Vec<String> = config.vips.iter().flat_map(backend_keys).collect();
        ids.vips.assign(&vips, limits.max_vips, IdKind::Vip)?;
        ids.backends
            .assign(&backends, limits.max_backends, IdKind::Backend)?;
        Ok(ids)
    }

    /// Like [`Ids::assign`], looking only at the VIPs a change touched:
    /// `old` are their declarations before (absent = added), `new` after
    /// (absent = removed). Frees first, so a replaced backend's id can be reused.
    pub(crate) fn assign_touched(
        &self,
        old: &[&Vip],
        new: &[&Vip],
        limits: Limits,
    ) -> Result<Ids, CapacityError> {
        let mut ids = self.clone();
        let new_names: BTreeSet<&str> = new.iter().map(|v| v.name.as_str()).collect();
        let new_backends: BTreeSet<String> = new.iter().flat_map(|v| backend_keys(v)).collect();
        let gone_vips: Vec<String> = old
            .iter()
            .filter(|v| !new_names.contains(v.name.as_str()))
            .map(|v| v.name.clone())
            .collect();
        let gone_backends: Vec<String> = old
            .iter()
            .flat_map(|v| backend_keys(v))
            .filter(|k| !new_backends.contains(k))
            .collect();
        ids.vips.free(gone_vips.iter());
        ids.backends.free(gone_backends.iter());
        let names: Vec<String> = new.iter().map(|v| v.name.clone()).collect();
        ids.vips.add(names.iter(), limits.max_vips, IdKind::Vip)?;
        ids.backends
            .add(new_backends.iter(), limits.max_backends, IdKind::Backend)?;
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

/// The id keys of a VIP's backends; its sorry backend is one more backend of
/// it (validation keeps it apart from the others).
fn backend_keys(vip: &Vip) -> Vec<String> {
    let sorry = match vip.all_down {
        tula_config::AllDown::Sorry => vip.sorry_backend,
        _ => None,
    };
    vip.backends
        .iter()
        .map(|b| b.address)
        .chain(sorry)
        .map(|address| backend_key(&vip.name, &address))
        .collect()
}

/// How many VIP and backend ids there are: the config's `max_vips` and
/// `max_backends`, or the loaded data plane's when those are smaller (its
/// sizes stay until it is reloaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_vips: u32,
    pub max_backends: u32,
}

impl Limits {
    #[cfg(test)]
    pub(crate) fn of(config: &Config) -> Limits {
        Limits {
            max_vips: config.max_vips,
            max_backends: config.max_backends,
        }
    }
}

/// What kind of id ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Vip,
    Backend,
}

/// No id left below the data plane's limit: the config asks for more VIPs
/// or backends than `max_vips` / `max_backends` allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no free {} id for {key}: all {limit} are in use ({} of the loaded data plane); remove some, or raise {} and reload the data plane", self.kind.noun(), self.kind.setting(), self.kind.setting())]
pub struct CapacityError {
    pub kind: IdKind,
    /// The VIP name, or `VIP/ADDRESS` of the backend, that found none.
    pub key: String,
    pub limit: u32,
}

impl IdKind {
    fn noun(self) -> &'static str {
        match self {
            IdKind::Vip => "VIP",
            IdKind::Backend => "backend",
        }
    }

    /// The config key that sets the limit.
    pub fn setting(self) -> &'static str {
        match self {
            IdKind::Vip => "max_vips",
            IdKind::Backend => "max_backends",
        }
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
        pool.assign(&keys(&["a", "b", "c"]), 5, IdKind::Backend)
            .unwrap();
        assert_eq!(pool.assigned["c"], 2);
        // b then a are freed; d and e take the never-used 3 and 4.
        pool.assign(&keys(&["a", "c"]), 5, IdKind::Backend).unwrap();
        pool.assign(&keys(&["c", "d", "e"]), 5, IdKind::Backend)
            .unwrap();
        assert_eq!((pool.assigned["d"], pool.assigned["e"]), (3, 4));
        // Now the freed ones, in the order they were freed: b's 1, then a's 0.
        pool.assign(&keys(&["c", "d", "e", "f", "g"]), 5, IdKind::Backend)
            .unwrap();
        assert_eq!((pool.assigned["f"], pool.assigned["g"]), (1, 0));
        let error = pool
            .assign(&keys(&["c", "d", "e", "f", "g", "h"]), 5, IdKind::Backend)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no free backend id for h: all 5 are in use (max_backends of the loaded data plane); remove some, or raise max_backends and reload the data plane"
        );
    }

    #[test]
    fn existing_keys_keep_their_ids() {
        let mut pool = Pool::default();
        pool.assign(&keys(&["a", "b"]), 8, IdKind::Vip).unwrap();
        let before = pool.assigned.clone();
        pool.assign(&keys(&["b", "x", "a"]), 8, IdKind::Vip)
            .unwrap();
        assert_eq!(pool.assigned["a"], before["a"]);
        assert_eq!(pool.assigned["b"], before["b"]);
    }

    #[test]
    fn a_lowered_limit_skips_freed_ids_above_it() {
        let mut pool = Pool::default();
        pool.assign(&keys(&["a", "b", "c", "d"]), 4, IdKind::Backend)
            .unwrap();
        pool.assign(&keys(&["a"]), 4, IdKind::Backend).unwrap();
        // freed: 1, 2, 3; with limit 3 only 1 and 2 can be handed out.
        pool.assign(&keys(&["a", "x", "y"]), 3, IdKind::Backend)
            .unwrap();
        assert_eq!((pool.assigned["x"], pool.assigned["y"]), (1, 2));
        assert!(pool
            .assign(&keys(&["a", "x", "y", "z"]), 3, IdKind::Backend)
            .is_err());
    }
}
