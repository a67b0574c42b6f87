//! [`EtcdStore`]: the writer's [`ClusterStore`]. A new revision is one etcd
//! transaction: if `PREFIX/revision` still holds the number the change was
//! based on, it becomes the new number and `PREFIX/config` the new revision;
//! otherwise nothing changes and the writer reports the conflict.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tula_config::Config;
use tula_control::{ClusterStore, ControlError, RevisionInfo};

use crate::etcd::{Etcd, EtcdError, KeyValue};
use crate::member::Link;
use crate::Keys;

/// One revision as the cluster holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedRevision {
    pub info: RevisionInfo,
    /// The node it was made on.
    #[serde(default)]
    pub node: String,
    /// The config as TOML, without any node's own settings (`[cluster]`, `pin_dir`).
    pub config: String,
}

impl SharedRevision {
    /// `config` as revision `info` made on `node`, without this node's own settings ([`Config::shared`]).
    pub fn new(node: &str, info: &RevisionInfo, config: &Config) -> SharedRevision {
        SharedRevision {
            info: info.clone(),
            node: node.to_string(),
            config: config.shared().to_toml_string(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a revision always encodes")
    }

    /// The revision in `PREFIX/config`, decoded; the error names what is wrong.
    pub fn decode(kv: &KeyValue) -> Result<(SharedRevision, Config), String> {
        let shared: SharedRevision = serde_json::from_slice(&kv.value)
            .map_err(|e| format!("{} is not a tula revision: {e}", kv.key))?;
        let config = Config::from_toml_str(&shared.config).map_err(|e| {
            format!("{} (revision {}) does not decode: {e}", kv.key, shared.info.number)
        })?;
        Ok((shared, config))
    }
}

/// Agrees each new revision with the cluster's etcd.
pub struct EtcdStore {
    node: String,
    etcd: Arc<Etcd>,
    keys: Keys,
    link: Arc<Link>,
}

impl EtcdStore {
    /// The store of node `node`.
    pub fn new(node: &str, etcd: Arc<Etcd>, keys: Keys, link: Arc<Link>) -> EtcdStore {
        EtcdStore {
            node: node.to_string(),
            etcd,
            keys,
            link,
        }
    }
}

/// Makes `shared` the cluster's newest revision if the newest is still
/// `based_on` (0: the cluster has none). `Ok(Err(current))` otherwise, with
/// the cluster's newest number and revision.
pub(crate) fn put_revision(
    etcd: &Etcd,
    keys: &Keys,
    based_on: u64,
    shared: &SharedRevision,
) -> Result<Result<(), (u64, Option<SharedRevision>)>, EtcdError> {
    let guard = keys.revision();
    let config_key = keys.config();
    let expected = based_on.to_string();
    let number = shared.info.number.to_string();
    let value = shared.encode();
    let answer = etcd.put_if(
        &guard,
        (based_on > 0).then_some(expected.as_bytes()),
        &[(&guard, number.as_bytes()), (&config_key, &value)],
        &[&guard, &config_key],
    )?;
    Ok(answer.map_err(|current| {
        let running = current
            .first()
            .and_then(|kv| kv.as_ref())
            .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.trim().parse().ok())
            .unwrap_or(0);
        let revision = current
            .get(1)
            .and_then(|kv| kv.as_ref())
            .and_then(|kv| SharedRevision::decode(kv).ok())
            .map(|(shared, _)| shared);
        (running, revision)
    }))
}

impl ClusterStore for EtcdStore {
    fn propose(
        &mut self,
        based_on: u64,
        info: &RevisionInfo,
        config: &Config,
    ) -> Result<(), ControlError> {
        let shared = SharedRevision::new(&self.node, info, config);
        match put_revision(&self.etcd, &self.keys, based_on, &shared) {
            Ok(Ok(())) => {
                self.link.reached();
                Ok(())
            }
            Ok(Err((running, newest))) => {
                self.link.reached();
                Err(ControlError::Conflict {
                    based_on,
                    running,
                    since: newest.map(|n| n.info).into_iter().collect(),
                })
            }
            Err(error) => {
                self.link.lost(&error);
                Err(ControlError::ClusterUnavailable(format!(
                    "the cluster's etcd must agree to every revision and did not answer ({error}); this node keeps running revision {based_on}"
                )))
            }
        }
    }
}
