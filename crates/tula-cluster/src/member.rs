//! [`Member`]: this node's part in the cluster. Two threads:
//! - the follower reads the cluster's newest revision, runs it through the
//!   writer if it is newer than the running one, then watches for the next;
//!   an empty cluster is seeded with this node's running revision;
//! - the publisher puts this node's [`NodeState`] under a lease every
//!   [`PUBLISH_EVERY`] and whenever it changes, so the view is current and
//!   a node that dies vanishes from it.
//!
//! Losing etcd changes nothing in the data plane: the node forwards with its
//! last revision, [`Link`] says so (log, `GET /api/cluster`, a metric), and
//! both threads retry until it answers again, then catch up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};
use tula_control::{Control, Snapshot};

use crate::etcd::{Etcd, EtcdError, Event, KeyValue};
use crate::revisions::{put_revision, SharedRevision};
use crate::state::{mismatches, ClusterView, NodeState};
use crate::Keys;

/// How often a node publishes its state (and renews its lease).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// A node's published state outlives its last renewal by this much.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// Pause between attempts while etcd does not answer.
const RETRY: Duration = Duration::from_millis(500);
/// How often the publisher looks for a change to publish at once.
const CHANGE_POLL: Duration = Duration::from_millis(100);

/// What the publisher compares besides the snapshot: (in service, announced), follow error.
type NodeFactsNow = ((bool, BTreeMap<String, bool>), Option<String>);

/// Whether this node reaches etcd, since when, and the last failure.
pub struct Link {
    etcd: String,
    state: Mutex<LinkState>,
}

#[derive(Clone)]
struct LinkState {
    connected: bool,
    since: SystemTime,
    error: Option<String>,
}

impl Link {
    pub fn new(etcd: &Etcd) -> Link {
        Link {
            etcd: etcd.endpoints(),
            state: Mutex::new(LinkState {
                connected: false,
                since: SystemTime::now(),
                error: Some("not contacted yet".into()),
            }),
        }
    }

    /// etcd answered.
    pub fn reached(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.connected {
            info!(etcd = %self.etcd, "reached the cluster's etcd");
            *state = LinkState {
                connected: true,
                since: SystemTime::now(),
                error: None,
            };
        }
    }

    /// etcd did not answer.
    pub fn lost(&self, error: &EtcdError) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.connected {
            warn!(etcd = %self.etcd, %error, "lost the cluster's etcd: forwarding goes on with the running revision; changes are refused until it answers");
            state.connected = false;
            state.since = SystemTime::now();
        }
        state.error = Some(error.to_string());
    }

    pub fn connected(&self) -> bool {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).connected
    }

    fn snapshot(&self) -> LinkState {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What the node knows beyond its control plane: whether it is in service
/// and which VIPs BGP announces (by name; empty when BGP is off).
pub type NodeFacts = dyn Fn() -> (bool, BTreeMap<String, bool>) + Send + Sync;

/// This node's threads in the cluster; stopped when dropped.
pub struct Member {
    shared: Arc<MemberShared>,
    threads: Vec<JoinHandle<()>>,
}

struct MemberShared {
    node: String,
    etcd: Arc<Etcd>,
    keys: Keys,
    link: Arc<Link>,
    control: Arc<Control>,
    facts: Box<NodeFacts>,
    follow_error: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Member {
    /// Starts following and publishing for node `node` of `control`.
    pub fn start(
        node: &str,
        etcd: Arc<Etcd>,
        keys: Keys,
        link: Arc<Link>,
        control: Arc<Control>,
        facts: Box<NodeFacts>,
    ) -> Member {
        let shared = Arc::new(MemberShared {
            node: node.to_string(),
            etcd,
            keys,
            link,
            control,
            facts,
            follow_error: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let follower = shared.clone();
        let publisher = shared.clone();
        let threads = vec![
            std::thread::Builder::new()
                .name("tula-cluster-follow".into())
                .spawn(move || follower.follow())
                .expect("starting the cluster follower thread"),
            std::thread::Builder::new()
                .name("tula-cluster-publish".into())
                .spawn(move || publisher.publish())
                .expect("starting the cluster publisher thread"),
        ];
        Member { shared, threads }
    }

    pub fn link(&self) -> &Arc<Link> {
        &self.shared.link
    }

    /// The cluster as this node sees it: every node's published state, or
    /// only this node's own while etcd does not answer. Blocks up to the
    /// etcd call timeout.
    pub fn view(&self) -> ClusterView {
        let shared = &self.shared;
        let own = shared.state();
        let read = shared.etcd.get(&shared.keys.revision()).and_then(|(_, newest)| {
            let (_, nodes) = shared.etcd.get_prefix(&shared.keys.nodes())?;
            Ok((newest, nodes))
        });
        let (cluster_revision, nodes) = match read {
            Ok((newest, nodes)) => {
                shared.link.reached();
                let newest = newest.and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok());
                let mut states: Vec<NodeState> = nodes
                    .iter()
                    .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                    .collect();
                // This node's freshest state, even if its last publication is a second old.
                states.retain(|s| s.node != own.node);
                states.push(own);
                states.sort_by(|a, b| a.node.cmp(&b.node));
                (newest, states)
            }
            Err(error) => {
                shared.link.lost(&error);
                (None, vec![own])
            }
        };
        let link = shared.link.snapshot();
        ClusterView {
            node: shared.node.clone(),
            etcd: shared.etcd.endpoints(),
            connected: link.connected,
            since: unix_seconds(link.since),
            error: link.error,
            mismatches: mismatches(cluster_revision, &nodes),
            cluster_revision,
            nodes,
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // The follower may be blocked in a watch for up to its idle time: let it go.
        for thread in self.threads.drain(..) {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl MemberShared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn state(&self) -> NodeState {
        let (in_service, announced) = (self.facts)();
        NodeState::of(&self.node, &self.control.snapshot(), in_service, &announced, self.follow_error())
    }

    fn follow_error(&self) -> Option<String> {
        self.follow_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The follower thread: catch up, watch, and again after any failure.
    fn follow(&self) {
        while !self.stopped() {
            match self.follow_once() {
                Ok(()) => {}
                Err(error) => {
                    self.link.lost(&error);
                    std::thread::sleep(RETRY);
                }
            }
        }
    }

    /// Reads the newest revision, runs it (or seeds an empty cluster), then
    /// runs each new one the watch brings until the watch ends.
    fn follow_once(&self) -> Result<(), EtcdError> {
        let (read_at, newest) = self.etcd.get(&self.keys.config())?;
        self.link.reached();
        match newest {
            Some(kv) => self.run(&kv),
            None => self.seed()?,
        }
        let mut watch = self.etcd.watch(&self.keys.config(), false, read_at + 1)?;
        while !self.stopped() {
            // An idle watch times out and is reopened from the last revision read: nothing is missed.
            let Ok(Some((_, events))) = watch.next_events() else {
                break;
            };
            for event in events {
                if let Event::Put(kv) = event {
                    self.run(&kv);
                }
            }
        }
        Ok(())
    }

    /// Puts this node's running revision into a cluster that holds none.
    fn seed(&self) -> Result<(), EtcdError> {
        let snapshot = self.control.snapshot();
        let number = snapshot.revision();
        if number == 0 {
            return Ok(());
        }
        let info = match self.control.history_since(number - 1) {
            Ok(history) => match history.into_iter().find(|r| r.number == number) {
                Some(info) => info,
                None => return Ok(()),
            },
            Err(error) => {
                warn!(%error, "reading the running revision's record to seed the cluster");
                return Ok(());
            }
        };
        let shared = SharedRevision::new(&self.node, &info, snapshot.config());
        match put_revision(&self.etcd, &self.keys, 0, &shared)? {
            Ok(()) => info!(revision = number, "the cluster held no config: seeded it with this node's running revision"),
            Err((theirs, _)) => info!(revision = theirs, "another node seeded the cluster first"),
        }
        Ok(())
    }

    /// Runs the revision in `kv` if it is newer than the running one.
    fn run(&self, kv: &KeyValue) {
        let (shared, config) = match SharedRevision::decode(kv) {
            Ok(decoded) => decoded,
            Err(error) => {
                warn!(%error, "ignoring the cluster's config");
                self.set_follow_error(Some(error));
                return;
            }
        };
        let number = shared.info.number;
        let snapshot = self.control.snapshot();
        let running = snapshot.revision();
        if number < running {
            warn!(cluster = number, running, "the cluster's newest revision is older than this node's: not applied (was etcd reset?)");
            return;
        }
        if number == running && config.same_shared(snapshot.config()) {
            return;
        }
        drop(snapshot);
        let started = std::time::Instant::now();
        let mut info = shared.info.clone();
        if !shared.node.is_empty() && shared.node != self.node {
            info.source = format!("{} (on {})", info.source, shared.node);
        }
        match self.control.follow(info, config) {
            Ok(info) => {
                info!(revision = info.number, source = %shared.info.source, elapsed_ms = started.elapsed().as_millis() as u64, "running the cluster's revision");
                self.set_follow_error(None);
            }
            Err(error) => {
                warn!(revision = number, %error, "cannot run the cluster's revision: keeping the running one");
                self.set_follow_error(Some(format!("revision {number}: {error}")));
            }
        }
    }

    fn set_follow_error(&self, error: Option<String>) {
        *self.follow_error.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// The publisher thread: this node's state under a lease renewed every
    /// [`PUBLISH_EVERY`], and at once (within [`CHANGE_POLL`]) when the
    /// running snapshot (revision, health) or the node's facts change, so
    /// the cluster view is not stale after a change.
    fn publish(&self) {
        let key = self.keys.node(&self.node);
        let mut lease: Option<i64> = None;
        let mut renewed: Option<Instant> = None;
        let mut published: Option<(Arc<Snapshot>, NodeFactsNow)> = None;
        while !self.stopped() {
            let snapshot = self.control.snapshot();
            let facts = ((self.facts)(), self.follow_error());
            let changed = published
                .as_ref()
                .is_none_or(|(s, f)| !Arc::ptr_eq(s, &snapshot) || *f != facts);
            let renew = renewed.is_none_or(|at| at.elapsed() >= PUBLISH_EVERY);
            if !changed && !renew {
                std::thread::sleep(CHANGE_POLL);
                continue;
            }
            let result = (|| -> Result<(), EtcdError> {
                let id = match lease {
                    Some(id) if !renew || self.etcd.keep_alive(id)? => id,
                    _ => self.etcd.grant(LEASE_TTL)?,
                };
                lease = Some(id);
                let ((in_service, announced), follow_error) = facts.clone();
                let state = NodeState::of(&self.node, &snapshot, in_service, &announced, follow_error);
                let state = serde_json::to_vec(&state).expect("a node state always encodes");
                self.etcd.put(&key, &state, Some(id))
            })();
            match result {
                Ok(()) => {
                    self.link.reached();
                    if renew {
                        renewed = Some(Instant::now());
                    }
                    published = Some((snapshot, facts));
                    std::thread::sleep(CHANGE_POLL);
                }
                Err(error) => {
                    self.link.lost(&error);
                    (lease, renewed, published) = (None, None, None);
                    std::thread::sleep(RETRY);
                }
            }
        }
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
