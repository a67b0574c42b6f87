//! A cluster's shared config in etcd (docs/CLUSTER.md): every node runs the
//! same numbered revision, a change saved on any node is agreed by a
//! compare-and-swap on the revision it was based on, every node follows the
//! newest, and each node publishes what it runs under a lease.
//!
//! Keys, under the `[cluster]` prefix (default `/tula`):
//! - `PREFIX/revision`: the newest revision's number, the compare-and-swap guard;
//! - `PREFIX/config`: that revision, [`SharedRevision`] as JSON (its record and TOML);
//! - `PREFIX/nodes/NAME`: each node's [`NodeState`], gone when its lease expires.
//!
//! Modules:
//! - `etcd`: the client of etcd's v3 JSON gateway (range, txn, put, lease, watch).
//! - `revisions`: [`EtcdStore`], the writer's [`tula_control::ClusterStore`].
//! - `state`: what a node publishes, ring digests, and the cluster view with its mismatches.
//! - `member`: [`Member`], the threads that follow the cluster's revisions and publish this node's state.

pub mod etcd;
mod member;
mod revisions;
mod state;

pub use etcd::{Etcd, EtcdError};
pub use member::{Link, Member, NodeFacts};
pub use revisions::{EtcdStore, SharedRevision};
pub use state::{ring_digest, ClusterView, NodeState, VipState};

/// The keys of one cluster (see the crate docs).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    pub fn revision(&self) -> String {
        format!("{}/revision", self.prefix)
    }

    pub fn config(&self) -> String {
        format!("{}/config", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}/nodes/{name}", self.prefix)
    }
}
