//! What applying a config would change, path by path, as `tula diff` shows it.
//!
//! Both configs are compared as their JSON trees, so every field of the model
//! is covered without listing them: VIPs are matched by name
//! (`vips[web]`), backends by address (`vips[web].backends[198.18.3.2]`),
//! other lists are compared whole. The API token is never shown.

use serde_json::{Map, Value};
use tula_config::{Config, Vip};

use crate::snapshot::Model;

use crate::{Change, Diff};

/// Shown instead of the API token.
const HIDDEN: &str = "********";

pub(crate) fn diff(old: &Config, new: &Config) -> Diff {
    let tree =
        |config: &Config| serde_json::to_value(config.redacted()).expect("a config always encodes");
    diff_trees(as_object(tree(old)), as_object(tree(new)), old, new)
}

/// What a change between two models is, VIP by VIP: found through the old
/// model's name index, so its cost follows the number of VIPs, not a tree walk.
pub(crate) struct Delta<'a> {
    /// The touched VIPs as they were (changed or removed), in the old order.
    pub old: Vec<&'a Vip>,
    /// The touched VIPs as they are (added or changed), in the new order.
    pub new: Vec<&'a Vip>,
    /// Names of the VIPs removed.
    pub removed: Vec<&'a str>,
    /// Whether a setting outside the VIPs changed.
    pub globals: bool,
}

impl<'a> Delta<'a> {
    pub(crate) fn between(old: &'a Model, new: &'a Model) -> Delta<'a> {
        let mut old_touched = Vec::new();
        let mut new_touched = Vec::new();
        for vip in &new.config.vips {
            match old.vip_index(&vip.name) {
                Some(i) if old.config.vips[i] == *vip => {}
                Some(i) => {
                    old_touched.push(i);
                    new_touched.push(vip);
                }
                None => new_touched.push(vip),
            }
        }
        let mut removed = Vec::new();
        for (i, vip) in old.config.vips.iter().enumerate() {
            if new.vip_index(&vip.name).is_none() {
                old_touched.push(i);
                removed.push(vip.name.as_str());
            }
        }
        old_touched.sort_unstable();
        Delta {
            old: old_touched.iter().map(|&i| &old.config.vips[i]).collect(),
            new: new_touched,
            removed,
            globals: old.globals != new.globals || old.config.api.token != new.config.api.token,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.old.is_empty() && self.new.is_empty() && !self.globals
    }

    /// The change list, as [`diff`] would give it, from the touched VIPs only.
    pub(crate) fn diff(&self, old: &Model, new: &Model) -> Diff {
        let tree = |globals: &Map<String, Value>, vips: &[&Vip]| {
            let mut tree = globals.clone();
            if !vips.is_empty() {
                let vips = serde_json::to_value(vips).expect("a VIP always encodes");
                tree.insert("vip".to_string(), vips);
            }
            tree
        };
        diff_trees(
            tree(&old.globals, &self.old),
            tree(&new.globals, &self.new),
            &old.config,
            &new.config,
        )
    }
}

/// The redacted config without its VIPs, as a JSON object: what [`Delta`]
/// compares for the global settings.
pub(crate) fn globals_tree(config: &mut Config) -> Map<String, Value> {
    let vips = std::mem::take(&mut config.vips);
    let tree = serde_json::to_value(config.redacted()).expect("a config always encodes");
    config.vips = vips;
    as_object(tree)
}

fn diff_trees(
    old_tree: Map<String, Value>,
    new_tree: Map<String, Value>,
    old: &Config,
    new: &Config,
) -> Diff {
    let mut changes = Vec::new();
    compare_objects("", &old_tree, &new_tree, &mut changes);
    if old.api.token.is_some() && new.api.token.is_some() && old.api.token != new.api.token {
        changes.push(Change {
            op: '~',
            path: "api.token".into(),
            before: Some(HIDDEN.into()),
            after: Some(HIDDEN.into()),
        });
    }
    Diff { changes }
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// One line per change: `+ vips[web]`, `~ vips[web].port: 80 -> 8080`.
    pub fn summary(&self) -> Vec<String> {
        self.changes.iter().map(Change::to_string).collect()
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.op, self.path)?;
        match (self.op, &self.before, &self.after) {
            ('~', Some(before), Some(after)) => write!(f, ": {before} -> {after}"),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        Ok(())
    }
}

fn as_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `parent.key`, or `key` at the top.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn compare_objects(
    path: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    changes: &mut Vec<Change>,
) {
    let mut keys: Vec<&String> = old.keys().collect();
    keys.extend(new.keys().filter(|k| !old.contains_key(*k)));
    for key in keys {
        match key.as_str() {
            // The model's `[[vip]]` tables; paths call them `vips`, like validation does.
            "vip" => compare_keyed(
                &join(path, "vips"),
                "name",
                old.get(key),
                new.get(key),
                changes,
            ),
            "backends" => compare_keyed(
                &join(path, "backends"),
                "address",
                old.get(key),
                new.get(key),
                changes,
            ),
            _ => compare(&join(path, key), old.get(key), new.get(key), changes),
        }
    }
}

fn compare(path: &str, old: Option<&Value>, new: Option<&Value>, changes: &mut Vec<Change>) {
    match (old, new) {
        (Some(Value::Object(old)), Some(Value::Object(new))) => {
            compare_objects(path, old, new, changes)
        }
        (Some(old), Some(new)) if old != new => changes.push(Change {
            op: '~',
            path: path.to_string(),
            before: Some(text(old)),
            after: Some(text(new)),
        }),
        (Some(_), Some(_)) | (None, None) => {}
        (None, Some(new)) => changes.push(Change {
            op: '+',
            path: path.to_string(),
            before: None,
            after: Some(text(new)),
        }),
        (Some(old), None) => changes.push(Change {
            op: '-',
            path: path.to_string(),
            before: Some(text(old)),
            after: None,
        }),
    }
}

/// Lists of objects matched by `id_key`: `path[ID]` for each.
fn compare_keyed(
    path: &str,
    id_key: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    changes: &mut Vec<Change>,
) {
    fn items<'a>(list: Option<&'a Value>, id_key: &str) -> Vec<(String, &'a Value)> {
        let Some(Value::Array(items)) = list else {
            return Vec::new();
        };
        items
            .iter()
            .map(|item| (item.get(id_key).map(text).unwrap_or_default(), item))
            .collect()
    }
    let old = items(old, id_key);
    let new = items(new, id_key);
    // Looked up by id, not searched: 1,000 VIPs against 1,000 were a million compares and a copy of each match.
    let index = |list: &[(String, &Value)]| -> std::collections::HashMap<String, usize> {
        let mut index = std::collections::HashMap::with_capacity(list.len());
        for (i, (id, _)) in list.iter().enumerate() {
            index.entry(id.clone()).or_insert(i);
        }
        index
    };
    let (old_index, new_index) = (index(&old), index(&new));
    for (id, old_item) in &old {
        compare(
            &format!("{path}[{id}]"),
            Some(old_item),
            new_index.get(id).map(|&i| new[i].1),
            changes,
        );
    }
    for (id, new_item) in new.iter().filter(|(id, _)| !old_index.contains_key(id)) {
        compare(&format!("{path}[{id}]"), None, Some(new_item), changes);
    }
}

/// A value as one line: strings bare, everything else as compact JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text).unwrap()
    }

    const BASE: &str = r#"
        interfaces = ["eth0"]
        [api]
        token = "0123456789abcdef"
        [[vip]]
        name = "web"
        address = "203.0.113.10"
        port = 80
        backends = [{ address = "198.18.3.2" }, { address = "198.18.3.3", weight = 2 }]
        [[vip]]
        name = "dns"
        address = "203.0.113.11"
        port = 53
        protocol = "udp"
        backends = [{ address = "198.18.3.2" }]
    "#;

    #[test]
    fn changes_are_named_by_vip_name_and_backend_address() {
        let old = config(BASE);
        let mut new = old.clone();
        new.vips[0].backends[1].weight = 5;
        new.vips[0].backends.remove(0);
        new.vips[0].backends.push(tula_config::Backend {
            address: "198.18.3.9".parse().unwrap(),
            port: None,
            weight: 1,
            state: tula_config::BackendState::Drain,
        });
        new.vips[0].health_check.interval = std::time::Duration::from_secs(5);
        new.vips.remove(1);
        new.ring_size = 4093;
        new.api.token = Some("fedcba9876543210".into());
        let lines = diff(&old, &new).summary();
        assert_eq!(
            lines,
            vec![
                "~ ring_size: 65537 -> 4093",
                "- vips[web].backends[198.18.3.2]",
                "~ vips[web].backends[198.18.3.3].weight: 2 -> 5",
                "+ vips[web].backends[198.18.3.9]",
                "~ vips[web].health_check.interval: 2s -> 5s",
                "- vips[dns]",
                "~ api.token: ******** -> ********",
            ]
        );
        let rendered = format!("{:?}", diff(&old, &new));
        assert!(
            !rendered.contains("0123456789abcdef") && !rendered.contains("fedcba9876543210"),
            "token leaked: {rendered}"
        );
    }

    #[test]
    fn equal_configs_have_no_diff_and_new_vips_are_one_change() {
        let old = config(BASE);
        assert!(diff(&old, &old.clone()).is_empty());
        let empty = Config::default();
        let lines = diff(&empty, &old).summary();
        assert!(lines.contains(&"+ vips[web]".to_string()), "{lines:?}");
        assert!(lines.contains(&"+ vips[dns]".to_string()), "{lines:?}");
        assert!(
            lines.contains(&"~ interfaces: [] -> [\"eth0\"]".to_string()),
            "{lines:?}"
        );
    }
}
