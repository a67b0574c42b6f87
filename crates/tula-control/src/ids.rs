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
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The next id below `limit`: one never handed out, else the oldest freed.
/// Freed ids at or above a lowered limit stay freed but unused.
fn take_id(next: &mut u32, freed: &mut VecDeque<u32>, limit: u32) -> Option<u32> {
    if *next < limit {
        *next += 1;
        return Some(*next - 1);
    }
    let position = freed.iter().position(|&id| id < limit)?;
    freed.remove(position)
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
            let id =
                take_id(&mut self.next, &mut self.freed, limit).ok_or_else(|| CapacityError {
                    kind,
                    key: key.clone(),
                    limit,
                    once_applied: None,
                })?;
            self.assigned.insert(key.clone(), id);
        }
        Ok(())
    }
}

/// Backend ids, one per (VIP, address), kept VIP by VIP: a copy of the
/// assignment shares the map of every VIP a change leaves alone, so a change
/// at 1,000 x 100 copies 1,000 pointers, not 100,000 keys. Saved in the
/// layout of a [`Pool`] keyed by `VIP/ADDRESS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Backends {
    by_vip: BTreeMap<String, Arc<BTreeMap<IpAddr, u32>>>,
    /// Freed ids, oldest first.
    freed: VecDeque<u32>,
    /// Ids from here up have never been handed out.
    next: u32,
}

impl Backends {
    /// Frees the ids of `vip`'s backends not in `wanted` (all of them when `None`).
    fn free(&mut self, vip: &str, wanted: Option<&BTreeSet<IpAddr>>) {
        let Some(held) = self.by_vip.get_mut(vip) else {
            return;
        };
        let gone = |a: &IpAddr| wanted.is_none_or(|w| !w.contains(a));
        if !held.keys().any(gone) {
            return;
        }
        let held = Arc::make_mut(held);
        let freed: Vec<IpAddr> = held.keys().copied().filter(gone).collect();
        for address in freed {
            self.freed
                .push_back(held.remove(&address).expect("listed above"));
        }
        if held.is_empty() {
            self.by_vip.remove(vip);
        }
    }

    /// Gives each of `vip`'s `addresses` without an id one below `limit`.
    fn add(&mut self, vip: &str, addresses: &[IpAddr], limit: u32) -> Result<(), CapacityError> {
        let held = self.by_vip.get(vip);
        if addresses
            .iter()
            .all(|a| held.is_some_and(|h| h.contains_key(a)))
        {
            return Ok(());
        }
        let mut held = self
            .by_vip
            .remove(vip)
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default();
        let mut result = Ok(());
        for address in addresses {
            if held.contains_key(address) {
                continue;
            }
            match take_id(&mut self.next, &mut self.freed, limit) {
                Some(id) => {
                    held.insert(*address, id);
                }
                None => {
                    result = Err(CapacityError {
                        kind: IdKind::Backend,
                        key: backend_key(vip, address),
                        limit,
                        once_applied: None,
                    });
                    break;
                }
            }
        }
        if !held.is_empty() {
            self.by_vip.insert(vip.to_string(), Arc::new(held));
        }
        result
    }
}

impl Serialize for Backends {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Assigned<'a>(&'a BTreeMap<String, Arc<BTreeMap<IpAddr, u32>>>);
        impl Serialize for Assigned<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().flat_map(|(vip, held)| {
                    held.iter()
                        .map(move |(address, id)| (backend_key(vip, address), id))
                }))
            }
        }
        let mut pool = serializer.serialize_struct("Pool", 3)?;
        pool.serialize_field("assigned", &Assigned(&self.by_vip))?;
        pool.serialize_field("freed", &self.freed)?;
        pool.serialize_field("next", &self.next)?;
        pool.end()
    }
}

impl<'de> Deserialize<'de> for Backends {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pool = Pool::deserialize(deserializer)?;
        let mut by_vip: BTreeMap<String, BTreeMap<IpAddr, u32>> = BTreeMap::new();
        for (key, id) in pool.assigned {
            let (vip, address) = key
                .rsplit_once('/')
                .and_then(|(vip, address)| Some((vip, address.parse::<IpAddr>().ok()?)))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!("backend key {key:?} is not VIP/ADDRESS"))
                })?;
            by_vip
                .entry(vip.to_string())
                .or_default()
                .insert(address, id);
        }
        Ok(Backends {
            by_vip: by_vip
                .into_iter()
                .map(|(vip, held)| (vip, Arc::new(held)))
                .collect(),
            freed: pool.freed,
            next: pool.next,
        })
    }
}

/// The VIP and backend id assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ids {
    vips: Pool,
    backends: Backends,
}

impl Ids {
    pub(crate) fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("ids.json")
    }

    /// Where [`Ids::save_change`] appends.
    fn journal_path(state_dir: &Path) -> PathBuf {
        state_dir.join("ids.log")
    }

    /// The saved assignment (`ids.json` with the changes journaled after
    /// it), or an empty one if none was saved.
    pub(crate) fn load(state_dir: &Path) -> Result<Ids, ControlError> {
        let path = Self::path(state_dir);
        let mut ids = match read_if_exists(&path)? {
            None => Ids::default(),
            Some(text) => serde_json::from_str(&text).map_err(|e| ControlError::Io {
                what: format!("decoding {}", path.display()),
                source: e.into(),
            })?,
        };
        let journal = read_if_exists(&Self::journal_path(state_dir))?.unwrap_or_default();
        // A line cut short by a crash is a change that was never saved whole: its revision was not recorded.
        for change in journal
            .lines()
            .map_while(|l| serde_json::from_str::<IdsChange>(l).ok())
        {
            change.replay(&mut ids);
        }
        Ok(ids)
    }

    /// Saves the whole assignment and empties the journal, not waiting for
    /// the disk: the ids only have to match the pinned maps, and a machine
    /// crash that could lose the file loses the maps too (the next start
    /// assigns ids for the config again).
    pub(crate) fn save(&self, state_dir: &Path) -> Result<(), ControlError> {
        let text = serde_json::to_vec(self).expect("ids always encode");
        replace_unsynced(&Self::path(state_dir), &text)?;
        replace_unsynced(&Self::journal_path(state_dir), b"")
    }

    /// Saves what changed since `before` (the assignment saved last) as one
    /// line appended to the journal, not waiting for the disk: a one-backend
    /// change at 1,000 x 100 writes one VIP's ids instead of encoding 100,000.
    pub(crate) fn save_change(&self, before: &Ids, state_dir: &Path) -> Result<(), ControlError> {
        let names: BTreeSet<&String> = (self.backends.by_vip.keys())
            .chain(before.backends.by_vip.keys())
            .collect();
        let vips = names
            .into_iter()
            .filter(|name| self.backends.by_vip.get(*name) != before.backends.by_vip.get(*name))
            .map(|name| {
                (
                    name.clone(),
                    self.backends.by_vip.get(name).map(|m| (**m).clone()),
                )
            })
            .collect();
        let change = IdsChange {
            vips: (self.vips != before.vips).then(|| self.vips.clone()),
            backends: vips,
            freed: self.backends.freed.clone(),
            next: self.backends.next,
        };
        let mut line = serde_json::to_vec(&change).expect("ids always encode");
        line.push(b'\n');
        let path = Self::journal_path(state_dir);
        let io = |source| ControlError::Io {
            what: format!("appending to {}", path.display()),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // One write: a kill leaves the line whole or absent.
        std::io::Write::write_all(&mut file, &line).map_err(io)
    }

    /// The assignment for `config`: ids of VIPs and backends no longer in it
    /// are freed, new ones get ids below the `limits` (the data plane's
    /// `max_vips` and `max_backends`).
    pub(crate) fn assign(&self, config: &Config, limits: Limits) -> Result<Ids, CapacityError> {
        let mut ids = self.clone();
        let vips: Vec<String> = config.vips.iter().map(|v| v.name.clone()).collect();
        ids.vips.assign(&vips, limits.max_vips, IdKind::Vip)?;
        let declared: BTreeSet<&str> = config.vips.iter().map(|v| v.name.as_str()).collect();
        let gone: Vec<String> = (ids.backends.by_vip.keys())
            .filter(|name| !declared.contains(name.as_str()))
            .cloned()
            .collect();
        for name in &gone {
            ids.backends.free(name, None);
        }
        let all: Vec<&Vip> = config.vips.iter().collect();
        ids.assign_backends(&all, limits.max_backends)?;
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
        let gone_vips: Vec<String> = old
            .iter()
            .filter(|v| !new_names.contains(v.name.as_str()))
            .map(|v| v.name.clone())
            .collect();
        ids.vips.free(gone_vips.iter());
        for name in &gone_vips {
            ids.backends.free(name, None);
        }
        let names: Vec<String> = new.iter().map(|v| v.name.clone()).collect();
        ids.vips.add(names.iter(), limits.max_vips, IdKind::Vip)?;
        ids.assign_backends(new, limits.max_backends)?;
        Ok(ids)
    }

    /// Frees the ids of backends `vips` no longer have, then gives their new ones ids.
    fn assign_backends(&mut self, vips: &[&Vip], limit: u32) -> Result<(), CapacityError> {
        let wanted: Vec<Vec<IpAddr>> = vips.iter().map(|v| backend_addresses(v)).collect();
        for (vip, addresses) in vips.iter().zip(&wanted) {
            let set: BTreeSet<IpAddr> = addresses.iter().copied().collect();
            self.backends.free(&vip.name, Some(&set));
        }
        for (vip, addresses) in vips.iter().zip(&wanted) {
            self.backends.add(&vip.name, addresses, limit)?;
        }
        Ok(())
    }

    /// The id of VIP `name`, if it has one.
    pub(crate) fn vip(&self, name: &str) -> Option<u32> {
        self.vips.assigned.get(name).copied()
    }

    /// The id of backend `address` of VIP `vip`, if it has one.
    pub(crate) fn backend(&self, vip: &str, address: &IpAddr) -> Option<u32> {
        self.backends.by_vip.get(vip)?.get(address).copied()
    }

    /// How much of `kind` the assignment uses: VIP ids, backend ids, or
    /// distinct backend addresses (a next hop each).
    pub(crate) fn in_use(&self, kind: IdKind) -> usize {
        let held = self.backends.by_vip.values();
        match kind {
            IdKind::Vip => self.vips.assigned.len(),
            IdKind::Backend => held.map(|backends| backends.len()).sum(),
            IdKind::BackendAddress => {
                let mut addresses = tula_config::AddressSet::default();
                addresses.extend(held.flat_map(|backends| backends.keys().copied()));
                addresses.len()
            }
        }
    }
}

/// One line of the ids journal: what a change did to the assignment.
#[derive(Serialize, Deserialize)]
struct IdsChange {
    /// The VIP ids, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vips: Option<Pool>,
    /// The backend ids of each VIP whose ids changed; `None` for one with none left.
    backends: BTreeMap<String, Option<BTreeMap<IpAddr, u32>>>,
    freed: VecDeque<u32>,
    next: u32,
}

impl IdsChange {
    fn replay(self, ids: &mut Ids) {
        if let Some(vips) = self.vips {
            ids.vips = vips;
        }
        for (name, held) in self.backends {
            match held {
                Some(held) => ids.backends.by_vip.insert(name, Arc::new(held)),
                None => ids.backends.by_vip.remove(&name),
            };
        }
        ids.backends.freed = self.freed;
        ids.backends.next = self.next;
    }
}

/// The addresses of a VIP's backends that get ids; its sorry backend is one
/// more backend of it (validation keeps it apart from the others).
fn backend_addresses(vip: &Vip) -> Vec<IpAddr> {
    let sorry = match vip.all_down {
        tula_config::AllDown::Sorry => vip.sorry_backend,
        _ => None,
    };
    vip.backends
        .iter()
        .map(|b| b.address)
        .chain(sorry)
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
    /// A next-hop slot of the data plane: one per distinct backend address.
    BackendAddress,
}

/// No id left below the data plane's limit: the config asks for more VIPs,
/// backends or backend addresses than `max_vips` / `max_backends` /
/// `max_backend_addresses` allow, or a change would hold more backend
/// addresses while it is programmed than `max_backend_addresses` allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct CapacityError {
    pub kind: IdKind,
    /// The VIP name, `VIP/ADDRESS` of the backend, or "N distinct backend
    /// addresses", that found none.
    pub key: String,
    pub limit: u32,
    /// Set when the config would fit once applied, but the change on the
    /// way may not (the addresses held now and those of every backend it
    /// sets, counted together: a bound that also covers a rollback, and
    /// that may refuse what the data plane's order of writes would let
    /// through, e.g. an id given again that gives its old address back):
    /// the distinct backend addresses the config has.
    pub once_applied: Option<usize>,
}

impl CapacityError {
    fn describe(&self) -> String {
        let (noun, setting) = (self.kind.noun(), self.kind.setting());
        match self.once_applied {
            None => format!(
                "no free {noun} for {}: all {} are in use ({setting} of the loaded data plane); remove some, or raise {setting} and reload the data plane",
                self.key, self.limit
            ),
            Some(after) => format!(
                "the change may hold {} while it is programmed (those held now and those of every backend it sets; {after} once applied), more than the {} next hops of the loaded data plane ({setting}): make it in two steps, removing the old backends first, or reload the data plane (`tula dataplane unload`, then start the daemon)",
                self.key, self.limit
            ),
        }
    }
}

impl IdKind {
    fn noun(self) -> &'static str {
        match self {
            IdKind::Vip => "VIP id",
            IdKind::Backend => "backend id",
            IdKind::BackendAddress => "next-hop slot (one per distinct backend address)",
        }
    }

    /// The config key that sets the limit.
    pub fn setting(self) -> &'static str {
        match self {
            IdKind::Vip => "max_vips",
            IdKind::Backend => "max_backends",
            IdKind::BackendAddress => "max_backend_addresses",
        }
    }
}

/// `VIP/ADDRESS`: VIP names cannot hold a `/`.
fn backend_key(vip: &str, address: &IpAddr) -> String {
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
    fn ids_json_keeps_its_layout_of_vip_slash_address_keys() {
        let saved = r#"{"vips":{"assigned":{"web":0},"freed":[],"next":1},"backends":{"assigned":{"web/198.18.0.2":1,"web/198.18.0.3":0,"web/2001:db8::2":2},"freed":[3],"next":4}}"#;
        let ids: Ids = serde_json::from_str(saved).unwrap();
        assert_eq!(ids.backend("web", &"198.18.0.3".parse().unwrap()), Some(0));
        assert_eq!(ids.backend("web", &"2001:db8::2".parse().unwrap()), Some(2));
        assert_eq!(serde_json::to_string(&ids).unwrap(), saved);
        // The freed 3 goes to the next new backend only once none was never used.
        let web: Vec<tula_config::Vip> = tula_config::Config::from_toml_str(
            "interfaces = [\"lo\"]\n[[vip]]\nname = \"web\"\naddress = \"203.0.113.1\"\nport = 80\nbackends = [{ address = \"198.18.0.9\" }, { address = \"198.18.0.3\" }]\n",
        )
        .unwrap()
        .vips;
        let limits = Limits {
            max_vips: 4,
            max_backends: 5,
        };
        let next = ids.assign_touched(&[], &[&web[0]], limits).unwrap();
        assert_eq!(next.backend("web", &"198.18.0.9".parse().unwrap()), Some(4));
        assert_eq!(next.backend("web", &"198.18.0.2".parse().unwrap()), None);
        assert_eq!(next.backend("web", &"198.18.0.3".parse().unwrap()), Some(0));
        assert_eq!(
            ids.backend("web", &"198.18.0.2".parse().unwrap()),
            Some(1),
            "the copy shares, not changes"
        );
    }

    #[test]
    fn in_use_counts_ids_and_the_distinct_addresses_behind_them() {
        // web and api share two servers; api's sorry backend is a third address.
        let config = tula_config::Config::from_toml_str(
            r#"
            interfaces = ["lo"]
            [[vip]]
            name = "web"
            address = "203.0.113.1"
            port = 80
            backends = [{ address = "198.18.0.2" }, { address = "198.18.0.3" }]
            [[vip]]
            name = "api"
            address = "203.0.113.2"
            port = 443
            all_down = "sorry"
            sorry_backend = "198.18.0.9"
            backends = [{ address = "198.18.0.2" }, { address = "198.18.0.3" }]
            "#,
        )
        .unwrap();
        let ids = Ids::default().assign(&config, Limits::of(&config)).unwrap();
        assert_eq!(ids.in_use(IdKind::Vip), 2);
        assert_eq!(ids.in_use(IdKind::Backend), 5);
        assert_eq!(ids.in_use(IdKind::BackendAddress), 3);
    }

    #[test]
    fn changes_are_journaled_and_read_back_after_the_whole_assignment() {
        let dir = std::env::temp_dir().join(format!("tula-ids-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = |text: &str| {
            let mut toml = String::from("interfaces = [\"lo\"]\n");
            for (v, backends) in text.split(';').enumerate() {
                toml.push_str(&format!("[[vip]]\nname = \"web{v}\"\naddress = \"203.0.113.{}\"\nport = 80\nbackends = [", v + 1));
                for b in backends.split(',').filter(|b| !b.is_empty()) {
                    toml.push_str(&format!("{{ address = \"198.18.{v}.{b}\" }},"));
                }
                toml.push_str("]\n");
            }
            tula_config::Config::from_toml_str(&toml).unwrap()
        };
        let limits = Limits {
            max_vips: 8,
            max_backends: 64,
        };
        let first = Ids::default()
            .assign(&config("2,3,4;2,3;2,3,4,5,6,7,8,9"), limits)
            .unwrap();
        first.save(&dir).unwrap();
        let whole = std::fs::metadata(Ids::path(&dir)).unwrap().len();
        let mut saved = first.clone();
        for step in [
            "2,3,4;2,3,9;2,3,4,5,6,7,8,9",
            "2,3,4;3,9;2,3,4,5,6,7,8,9",
            "2,3,4,5;3,9",
        ] {
            let next = saved.assign(&config(step), limits).unwrap();
            next.save_change(&saved, &dir).unwrap();
            saved = next;
        }
        let journal = std::fs::metadata(Ids::journal_path(&dir)).unwrap().len();
        assert!(
            journal < whole,
            "three small changes wrote {journal} bytes, the whole is {whole}"
        );
        assert_eq!(Ids::load(&dir).unwrap(), saved);
        // A torn last line is a change that was never saved.
        let mut torn = std::fs::read(Ids::journal_path(&dir)).unwrap();
        torn.extend_from_slice(b"{\"backends\":{\"web0\":");
        std::fs::write(Ids::journal_path(&dir), torn).unwrap();
        assert_eq!(Ids::load(&dir).unwrap(), saved);
        // A whole save empties the journal.
        first.save(&dir).unwrap();
        assert_eq!(Ids::load(&dir).unwrap(), first);
        assert_eq!(std::fs::metadata(Ids::journal_path(&dir)).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(&dir);
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
