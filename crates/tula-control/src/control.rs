//! [`Control`]: the running config and revision, the data plane that runs
//! it, and the operations on them.
//!
//! One writer thread owns the data plane and the running state; every change
//! (apply, edit, rollback, health verdict, unload) reaches it as a
//! [`Command`] through a queue. Edits waiting together are coalesced into one
//! revision. Each change becomes a typed delta (the VIPs it touched, whether
//! a global setting changed), and only those VIPs are planned and programmed.
//! After each change the writer publishes a new [`Snapshot`], which readers
//! take without waiting for it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{info, warn};
use tula_config::{AddressSet, Config, ConfigError, ConfigErrors, HostFacts, Vip};
use tula_dataplane::{Counters, Dataplane, DataplaneError, LoadOptions};

use crate::diff::{diff, Delta};
use crate::flows::{FlowBoard, FlowOptions, FlowSampler};
use crate::health::Health;
use crate::ids::{CapacityError, IdKind, Ids, Limits};
use crate::plan::{plan, plan_touched, ring_members, transition, DataplaneState};
use crate::program::{Kernel, ProgramError, Programmer};
use crate::snapshot::{Model, Snapshot};
use crate::store::Store;
use crate::{host, ControlError, ControlOptions, Diff, NewFlows, RevisionInfo, Serving, VipStatus};

/// Where a command's result goes: called once, on the writer thread.
pub type Reply<T> = Box<dyn FnOnce(Result<T, ControlError>) + Send>;

/// A change to the running config, e.g. "drain backend X of VIP web".
pub struct Edit {
    /// What made it, recorded in the revision ("api: drain vips[web].backends[198.18.3.2]").
    pub source: String,
    /// The revision the change was decided on; a different running one is a conflict.
    pub based_on: Option<u64>,
    /// The VIP it changes, or `None` for a change anywhere. Edits of
    /// different VIPs that name their base revision are coalesced; one of
    /// the same VIP waits for the next revision (and conflicts there).
    pub vip: Option<String>,
    /// Makes the change. May run more than once (on a fresh copy each time):
    /// if the coalesced revision is refused, each edit is applied alone.
    /// On `Err` it must leave the config as it found it.
    pub change: Box<dyn FnMut(&mut Config) -> Result<(), EditRefused> + Send>,
}

/// An edit that does not apply to the running config, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EditRefused(pub String);

/// What the writer is asked to do.
pub enum Command {
    Edit(Edit, Reply<RevisionInfo>),
    /// Save and apply a whole config.
    Apply {
        config: Box<Config>,
        source: String,
        based_on: Option<u64>,
        reply: Reply<RevisionInfo>,
    },
    /// Apply revision `number` again, as a new revision.
    Rollback {
        number: u64,
        based_on: Option<u64>,
        reply: Reply<RevisionInfo>,
    },
    /// Run a revision the cluster agreed on elsewhere, under its own number
    /// and record (nothing is proposed). One not newer than the running
    /// revision changes nothing.
    Follow {
        info: RevisionInfo,
        config: Box<Config>,
        reply: Reply<RevisionInfo>,
    },
    /// Health checker verdicts: (VIP, backend, healthy).
    Health {
        verdicts: Vec<(String, IpAddr, bool)>,
        reply: Reply<()>,
    },
    Unload(Reply<()>),
}

/// The cluster's copy of the config (etcd, crates/tula-cluster): a node in
/// a cluster records a revision only once the cluster has agreed to it.
pub trait ClusterStore: Send {
    /// Makes `config` the cluster's revision `info.number` if the cluster's
    /// newest is still `based_on` (0: none yet). Otherwise
    /// [`ControlError::Conflict`] (another node was first), or
    /// [`ControlError::ClusterUnavailable`] if the store cannot be reached.
    fn propose(
        &mut self,
        based_on: u64,
        info: &RevisionInfo,
        config: &Config,
    ) -> Result<(), ControlError>;
}

/// Edits coalesced into one revision at most.
const MAX_COALESCED: usize = 1000;

/// Changes of the ids appended to their journal before they are saved whole again.
const MAX_IDS_JOURNALED: usize = 100;

/// How long the writer waits for a command before it gives freed memory back.
const IDLE_TRIM: Duration = Duration::from_secs(20);

/// The config file is written once no revision was committed for this long...
const FILE_SETTLE: Duration = Duration::from_millis(100);
/// ...or this long after the oldest revision it does not hold yet.
const FILE_MAX_DELAY: Duration = Duration::from_secs(1);
/// A failed write of the config file is tried again after this long.
const FILE_RETRY: Duration = Duration::from_secs(1);

/// Loads or adopts the data plane for a config: (programmer, adopted).
pub(crate) type Loader =
    Box<dyn FnMut(&Config) -> Result<(Box<dyn Programmer>, bool), ControlError> + Send>;

/// The load balancer's running state. Shared as one `Arc<Control>` by the
/// API, the UI and the health checker.
pub struct Control {
    shared: Arc<Shared>,
    queue: Mutex<Option<Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Writes the config file after changes, off the writer's path.
    file_writer: Mutex<Option<JoinHandle<()>>>,
}

/// What readers and the writer share.
struct Shared {
    options: ControlOptions,
    store: Store,
    published: RwLock<Arc<Snapshot>>,
    flows: Arc<FlowBoard>,
}

/// The writer's state: only the writer thread touches it.
struct Writer {
    shared: Arc<Shared>,
    /// 0 = nothing applied yet.
    revision: u64,
    /// The running revision's record (`None` before the first).
    info: Option<RevisionInfo>,
    model: Arc<Model>,
    ids: Arc<Ids>,
    /// Changes of the ids journaled since they were last saved whole.
    ids_journaled: usize,
    health: Arc<Health>,
    dataplane: Option<Loaded>,
    loader: Loader,
    /// In a cluster, where each new revision is agreed first.
    cluster: Option<Box<dyn ClusterStore>>,
}

struct Loaded {
    programmer: Box<dyn Programmer>,
    pin_dir: PathBuf,
    /// What it holds, as planned; `None` when a failed rollback left that unknown,
    /// so the next change first reads back what it really holds.
    programmed: Option<DataplaneState>,
}

impl Control {
    /// Opens the state, adopts a pinned data plane (or loads a new one),
    /// reconciles it to the saved config without flushing connections, and
    /// starts the writer thread (in this thread's network namespace).
    ///
    /// The config file wins: if it differs from the last revision (edited by
    /// hand), it is validated, applied and recorded as a new revision. With
    /// no config file and no revision, nothing is loaded until the first apply.
    pub fn start(options: ControlOptions) -> Result<Control, ControlError> {
        Control::start_with(options, Box::new(load_kernel), None)
    }

    /// [`Control::start`] for a node of a cluster: every change made here is
    /// agreed with `cluster` before it is programmed or recorded, and
    /// [`Control::follow`] runs the revisions agreed elsewhere.
    pub fn start_in_cluster(
        options: ControlOptions,
        cluster: Box<dyn ClusterStore>,
    ) -> Result<Control, ControlError> {
        Control::start_with(options, Box::new(load_kernel), Some(cluster))
    }

    pub(crate) fn start_with(
        options: ControlOptions,
        loader: Loader,
        cluster: Option<Box<dyn ClusterStore>>,
    ) -> Result<Control, ControlError> {
        let store = Store::open(&options)?;
        let ids = Ids::load(&options.state_dir)?;
        let latest = store.latest()?;
        let flows = Arc::new(FlowBoard::default());
        let previous = match &latest {
            Some(latest) => store.revision(latest.number)?,
            None => Config::default(),
        };
        let empty = Arc::new(Snapshot::new(
            0,
            Arc::new(Model::new(Config::default())),
            Arc::default(),
            Arc::default(),
            None,
            false,
            flows.clone(),
        ));
        let shared = Arc::new(Shared {
            options,
            store,
            published: RwLock::new(empty),
            flows,
        });
        let mut writer = Writer {
            shared: shared.clone(),
            revision: latest.as_ref().map_or(0, |l| l.number),
            info: latest.clone(),
            model: Arc::new(Model::new(previous.clone())),
            ids: Arc::new(ids),
            ids_journaled: 0,
            health: Arc::default(),
            dataplane: None,
            loader,
            cluster,
        };
        writer.reconcile_at_start(previous, latest.as_ref())?;
        writer.publish();
        let (queue, commands) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tula-writer".into())
            .spawn(move || writer.run(commands))
            .map_err(|source| ControlError::Io {
                what: "starting the writer thread".into(),
                source,
            })?;
        let control = Control {
            shared: shared.clone(),
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(thread)),
            file_writer: Mutex::new(None),
        };
        let file_writer = std::thread::Builder::new()
            .name("tula-config-file".into())
            .spawn(move || write_config_files(&shared.store))
            .map_err(|source| ControlError::Io {
                what: "starting the config file writer thread".into(),
                source,
            })?;
        *control
            .file_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file_writer);
        Ok(control)
    }

    /// The running revision's indexed model: cheap, lock-free for the caller,
    /// never waits for a change in progress.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot()
    }

    /// The config the data plane runs, and its revision number (0 = none
    /// yet). A copy: readers that need no copy use [`Control::snapshot`].
    pub fn running(&self) -> (u64, Config) {
        let snapshot = self.snapshot();
        (snapshot.revision(), snapshot.config().clone())
    }

    /// The running revision (0 = none yet), held in memory.
    pub fn running_revision(&self) -> u64 {
        self.snapshot().revision()
    }

    /// Where the config file is (what [`Control::saved`] reads).
    pub fn config_path(&self) -> &std::path::Path {
        self.shared.store.config_path()
    }

    /// The config file on disk (may differ from `running` if edited by
    /// hand). Right after a change, what the file is about to hold: it is
    /// written once changes settle ([`Control::flush_config_file`]).
    pub fn saved(&self) -> Result<Config, ControlError> {
        let store = &self.shared.store;
        store.saved()?.ok_or_else(|| ControlError::Io {
            what: format!("reading {}", store.config_path().display()),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    /// Writes the config file now if it does not hold the newest revision
    /// yet. Changes write it themselves within [`FILE_SETTLE`] of the last
    /// one (and at least every [`FILE_MAX_DELAY`] while they go on).
    pub fn flush_config_file(&self) -> Result<(), ControlError> {
        self.shared.store.flush_due_file()
    }

    /// Validates against this host (interfaces, local addresses, subnets);
    /// every problem at once.
    pub fn validate(&self, config: &Config) -> Result<(), ConfigErrors> {
        validate(config, None)
    }

    /// What applying `config` would change, compared with the running config.
    pub fn diff(&self, config: &Config) -> Diff {
        diff(self.snapshot().config(), config)
    }

    /// Hands `command` to the writer; its reply is called on the writer
    /// thread when it is done (with [`ControlError::Stopped`] if the writer
    /// has stopped). Never blocks.
    pub fn submit(&self, command: Command) {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let unsent = match queue.as_ref() {
            Some(queue) => queue.send(command).err().map(|e| e.0),
            None => Some(command),
        };
        if let Some(command) = unsent {
            command.refuse(ControlError::Stopped);
        }
    }

    /// Save and apply, whatever the running revision is: validate, program
    /// the data plane by delta (rolling back on failure), then write the file
    /// and the revision atomically.
    ///
    /// A config equal to the running one programs nothing new and returns the
    /// running revision instead of recording another.
    pub fn apply(&self, config: Config, source: &str) -> Result<RevisionInfo, ControlError> {
        self.apply_based_on(config, source, None)
    }

    /// [`Control::apply`] of a config decided on revision `based_on`: if that
    /// is no longer the running one, nothing changes and the error is
    /// [`ControlError::Conflict`] with the revisions made since.
    pub fn apply_based_on(
        &self,
        config: Config,
        source: &str,
        based_on: Option<u64>,
    ) -> Result<RevisionInfo, ControlError> {
        let source = source.to_string();
        self.call(|reply| Command::Apply {
            config: Box::new(config),
            source,
            based_on,
            reply,
        })
    }

    /// Applies one edit (coalesced with others waiting at the same time).
    pub fn edit(&self, edit: Edit) -> Result<RevisionInfo, ControlError> {
        self.call(|reply| Command::Edit(edit, reply))
    }

    /// Runs revision `info.number` that the cluster agreed on elsewhere
    /// (see [`Command::Follow`]); returns the running revision afterwards.
    pub fn follow(&self, info: RevisionInfo, config: Config) -> Result<RevisionInfo, ControlError> {
        self.call(|reply| Command::Follow {
            info,
            config: Box::new(config),
            reply,
        })
    }

    /// Every revision kept, oldest first.
    pub fn history(&self) -> Result<Vec<RevisionInfo>, ControlError> {
        self.shared.store.history()
    }

    /// The revisions after `number` that are still kept, oldest first.
    pub fn history_since(&self, number: u64) -> Result<Vec<RevisionInfo>, ControlError> {
        self.shared.history_since(number)
    }

    /// Revision `number`'s config.
    pub fn revision(&self, number: u64) -> Result<Config, ControlError> {
        self.shared.store.revision(number)
    }

    /// Applies revision `number` again, recorded as a new revision.
    /// A revision pruned by retention is [`ControlError::NoSuchRevision`].
    pub fn rollback(&self, number: u64) -> Result<RevisionInfo, ControlError> {
        self.rollback_based_on(number, None)
    }

    /// [`Control::rollback`], refused with a conflict unless `based_on` is running.
    pub fn rollback_based_on(
        &self,
        number: u64,
        based_on: Option<u64>,
    ) -> Result<RevisionInfo, ControlError> {
        self.call(|reply| Command::Rollback {
            number,
            based_on,
            reply,
        })
    }

    /// Marks backend `address` of VIP `vip` healthy or not (the health
    /// checker's verdict, issue 5). An unhealthy backend leaves its ring (only
    /// its slots move) and stops being alive, so its flows re-hash. Not a
    /// config change: no revision is recorded, and a restart starts healthy.
    pub fn set_health(
        &self,
        vip: &str,
        address: IpAddr,
        healthy: bool,
    ) -> Result<(), ControlError> {
        self.set_health_many(&[(vip, address, healthy)])
    }

    /// Several verdicts of [`Control::set_health`] programmed as one change:
    /// each VIP's ring is rebuilt once, whatever number of its backends
    /// changed. If one names a VIP or backend not in the running config,
    /// nothing is changed and that one is the error.
    pub fn set_health_many(&self, verdicts: &[(&str, IpAddr, bool)]) -> Result<(), ControlError> {
        let verdicts = verdicts
            .iter()
            .map(|&(vip, address, healthy)| (vip.to_string(), address, healthy))
            .collect();
        self.call(|reply| Command::Health { verdicts, reply })
    }

    /// Per-VIP and per-backend status of the running config, read outside
    /// the writer (the connection table is walked by the calling thread).
    pub fn status(&self) -> Result<Vec<VipStatus>, ControlError> {
        self.snapshot().status()
    }

    /// Walks the connection table now and publishes its flows (what the
    /// sampler does every few seconds): status read after it counts every
    /// packet sent before it. The first call in a process takes a second
    /// more (the kernel's clock is calibrated).
    pub fn sample_flows(&self) -> Result<(), ControlError> {
        self.shared.flows.sample(&self.snapshot())
    }

    /// Starts the thread that samples flows every `options.every`, counting
    /// a flow as active while its last packet is at most `options.window`
    /// old. It stops when the returned handle is dropped.
    pub fn start_flow_sampler(&self, options: FlowOptions) -> Result<FlowSampler, ControlError> {
        self.shared.flows.set_options(options);
        let shared = self.shared.clone();
        FlowSampler::start(self.shared.flows.clone(), move || shared.snapshot())
    }

    /// What this node can serve, without reading any map: whether a data plane
    /// is loaded, where it is attached, and where each VIP's new flows go.
    /// Cheap enough to poll (the BGP announcer does).
    pub fn serving(&self) -> Serving {
        self.snapshot().serving()
    }

    /// The data plane's global counters (all zero before anything is loaded).
    pub fn counters(&self) -> Result<Counters, ControlError> {
        self.snapshot().counters()
    }

    /// Removes every program, link and map (`tula dataplane unload`): traffic
    /// to the VIPs is no longer balanced. The saved config and revisions stay;
    /// the next apply (or start) loads a new data plane.
    pub fn unload(&self) -> Result<(), ControlError> {
        self.call(Command::Unload)
    }

    /// Submits the command `make` builds and waits for its reply.
    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, ControlError> {
        let (sender, receiver) = mpsc::sync_channel(1);
        self.submit(make(Box::new(move |result| {
            let _ = sender.send(result);
        })));
        receiver.recv().unwrap_or(Err(ControlError::Stopped))
    }
}

impl Drop for Control {
    /// Stops the writer after the commands already queued, then the config
    /// file writer once the file holds the newest revision.
    fn drop(&mut self) {
        drop(
            self.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        join(&self.writer);
        self.shared.store.stop_file_writer();
        join(&self.file_writer);
    }
}

fn join(thread: &Mutex<Option<JoinHandle<()>>>) {
    let thread = thread.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(thread) = thread {
        let _ = thread.join();
    }
}

/// The config file writer: writes the newest revision's config once changes
/// settle, until [`Store::stop_file_writer`], then what is still due.
fn write_config_files(store: &Store) {
    let mut retry_at = None;
    while store.wait_for_due_file(FILE_SETTLE, FILE_MAX_DELAY, retry_at) {
        retry_at = None;
        if let Err(error) = store.write_due_file() {
            // The revision exists and runs; the next start writes the file from it if need be.
            warn!(%error, "writing the config file failed; trying again");
            retry_at = Some(std::time::Instant::now() + FILE_RETRY);
        }
    }
    if let Err(error) = store.flush_due_file() {
        warn!(%error, "writing the config file failed; the next start writes it from the last revision");
    }
}

impl Command {
    /// Answers the command with `error` without running it.
    fn refuse(self, error: ControlError) {
        match self {
            Command::Edit(_, reply)
            | Command::Apply { reply, .. }
            | Command::Rollback { reply, .. }
            | Command::Follow { reply, .. } => reply(Err(error)),
            Command::Health { reply, .. } | Command::Unload(reply) => reply(Err(error)),
        }
    }
}

impl Shared {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.published
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn history_since(&self, number: u64) -> Result<Vec<RevisionInfo>, ControlError> {
        let mut history = self.store.history()?;
        history.retain(|r| r.number > number);
        Ok(history)
    }
}

impl Writer {
    /// Brings the data plane to the saved config at start (see [`Control::start`]).
    fn reconcile_at_start(
        &mut self,
        previous: Config,
        latest: Option<&RevisionInfo>,
    ) -> Result<(), ControlError> {
        let store = &self.shared.store;
        // (config, its text, whether it is new and must be recorded)
        let (config, text, is_new) = match (store.config_text()?, latest) {
            (Some(text), Some(latest))
                if store.file_predates_latest()
                    && Config::from_toml_str(&text).ok().as_ref() != Some(&previous) =>
            {
                warn!(path = %store.config_path().display(), revision = latest.number, "the config file is older than the last revision and differs from it (its write was lost in a crash); writing it again from the revision");
                let text = store.revision_text(latest.number)?;
                store.write_config_file(&text)?;
                (previous.clone(), text, false)
            }
            (Some(text), _) => {
                let config = Config::from_toml_str(&text).map_err(ControlError::Invalid)?;
                let is_new = latest.is_none() || config != previous;
                (config, text, is_new)
            }
            (None, Some(latest)) => {
                let text = store.revision_text(latest.number)?;
                warn!(path = %store.config_path().display(), revision = latest.number, "the config file is missing; writing it again from the last revision");
                store.write_config_file(&text)?;
                (previous.clone(), text, false)
            }
            (None, None) => {
                info!(path = %store.config_path().display(), "no config yet: the data plane is loaded at the first apply");
                self.model = Arc::new(Model::new(Config::default()));
                return Ok(());
            }
        };
        validate(&config, None).map_err(ControlError::Invalid)?;
        let (programmer, adopted) = (self.loader)(&config)?;
        let ids = match self
            .ids
            .assign(&config, limits(&config, programmer.as_ref()))
        {
            Ok(ids) => ids,
            Err(error) => {
                if !adopted {
                    let _ = programmer.teardown();
                }
                return Err(error.into());
            }
        };
        let wanted = plan(&config, &ids, &self.health).map_err(ControlError::Invalid)?;
        let mut loaded = Loaded {
            programmer,
            pin_dir: config.pin_dir.clone(),
            programmed: None,
        };
        warn_on_reload_settings(&loaded, &config);
        let held = if adopted {
            loaded
                .programmer
                .read_state(&wanted)
                .map_err(|e| dataplane_io(&config.pin_dir, e.to_string()))?
        } else {
            DataplaneState::default()
        };
        if let Err(error) = fits_backend_addresses(None, &wanted, loaded.programmer.as_ref()) {
            if !adopted {
                let _ = loaded.programmer.teardown();
            }
            return Err(error.into());
        }
        let ops = transition(&held, &wanted);
        if let Err(error) = loaded.programmer.run(&ops) {
            if !adopted {
                // Nothing stays of a data plane loaded just now.
                let _ = loaded.programmer.teardown();
            }
            return Err(dataplane_io(
                &config.pin_dir,
                format!("reconciling it to the saved config: {error}"),
            ));
        }
        loaded.programmed = Some(wanted);
        ids.save(&self.shared.options.state_dir)?;
        self.health = Arc::new(self.health.settled(&config));
        self.ids = Arc::new(ids);
        self.dataplane = Some(loaded);
        if is_new {
            let source = format!("start: {}", store.config_path().display());
            let info = store.commit(&text, &source, diff(&previous, &config).summary())?;
            log_applied(&info);
            self.revision = info.number;
            self.info = Some(info);
        }
        // The log still holds revisions pruned since it was last compacted.
        self.prune(&config);
        self.model = Arc::new(Model::new(config));
        info!(
            revision = self.revision,
            adopted,
            operations = ops.len(),
            "started: the data plane runs the saved config"
        );
        Ok(())
    }

    /// Serves commands until every [`Control`] handle is gone.
    fn run(mut self, commands: Receiver<Command>) {
        // What the start's apply freed.
        release_freed_memory();
        let mut next = None;
        loop {
            let first = match next
                .take()
                .map(Ok)
                .unwrap_or_else(|| commands.recv_timeout(IDLE_TRIM))
            {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    release_freed_memory();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_COALESCED {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let mut edits = Vec::new();
            for command in batch {
                match command {
                    Command::Edit(edit, reply) => {
                        edits.push((edit, reply));
                        continue;
                    }
                    other => {
                        // Edits queued before another command land before it.
                        self.edits(std::mem::take(&mut edits));
                        self.execute(other);
                    }
                }
            }
            self.edits(edits);
            // Once nothing waits: the replies are out, and trimming delays no one.
            next = commands.try_recv().ok();
            if next.is_none() {
                release_freed_memory();
            }
        }
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Edit(edit, reply) => self.edits(vec![(edit, reply)]),
            Command::Apply {
                config,
                source,
                based_on,
                reply,
            } => {
                let result = self
                    .check_base(based_on)
                    .and_then(|()| self.apply(*config, &source));
                reply(logged(&source, result));
            }
            Command::Rollback {
                number,
                based_on,
                reply,
            } => {
                let source = format!("rollback to {number}");
                let result = self.check_base(based_on).and_then(|()| {
                    let config = self.shared.store.revision(number)?;
                    self.apply(config, &source)
                });
                reply(logged(&source, result));
            }
            Command::Follow {
                info,
                config,
                reply,
            } => {
                let source = format!("cluster revision {}: {}", info.number, info.source);
                // Equal numbers with different configs: a node that recorded its own before joining.
                let result = match &self.info {
                    Some(running)
                        if info.number < running.number
                            || (info.number == running.number
                                && config.same_shared(&self.model.config)) =>
                    {
                        Ok(running.clone())
                    }
                    _ => {
                        let origin = info.source.clone();
                        self.apply_as(*config, &origin, Some(info))
                    }
                };
                reply(logged(&source, result));
            }
            Command::Health { verdicts, reply } => reply(self.set_health(&verdicts)),
            Command::Unload(reply) => reply(self.unload()),
        }
    }

    /// A conflict unless `based_on` is absent or the running revision.
    fn check_base(&self, based_on: Option<u64>) -> Result<(), ControlError> {
        match based_on {
            Some(based_on) if based_on != self.revision => Err(ControlError::Conflict {
                based_on,
                running: self.revision,
                since: self.shared.history_since(based_on).unwrap_or_default(),
            }),
            _ => Ok(()),
        }
    }

    /// Applies waiting edits as one revision: each edit in turn on one copy
    /// of the running config, then one apply. If that apply is refused, each
    /// edit is applied alone so only the faulty one fails.
    fn edits(&mut self, edits: Vec<(Edit, Reply<RevisionInfo>)>) {
        if edits.is_empty() {
            return;
        }
        let mut config = self.model.config.clone();
        let mut accepted: Vec<(Edit, Reply<RevisionInfo>)> = Vec::new();
        let mut touched: BTreeSet<Option<String>> = BTreeSet::new();
        let mut deferred = Vec::new();
        for (mut edit, reply) in edits {
            if let Err(conflict) = self.check_base(edit.based_on) {
                reply(logged(&edit.source, Err(conflict)));
                continue;
            }
            // An edit decided on this revision must not silently undo another of the same VIP.
            let overlaps = touched.contains(&None)
                || (edit.vip.is_none() && !touched.is_empty())
                || touched.contains(&edit.vip);
            if edit.based_on.is_some() && overlaps {
                deferred.push((edit, reply));
                continue;
            }
            match (edit.change)(&mut config) {
                Ok(()) => {
                    touched.insert(edit.vip.clone());
                    accepted.push((edit, reply));
                }
                Err(refused) => reply(logged(&edit.source, Err(refused.into()))),
            }
        }
        match accepted.len() {
            0 => {}
            1 => {
                let (edit, reply) = accepted.pop().expect("one");
                reply(logged(&edit.source, self.apply(config, &edit.source)));
            }
            n => {
                let sources: Vec<&str> = accepted.iter().map(|(e, _)| e.source.as_str()).collect();
                let source = format!("{n} edits: {}", sources.join("; "));
                match self.apply(config, &source) {
                    Ok(info) => {
                        for (_, reply) in accepted {
                            reply(Ok(info.clone()));
                        }
                    }
                    Err(error) => {
                        warn!(%error, edits = n, "the coalesced edits were refused together; applying each alone");
                        for (mut edit, reply) in accepted {
                            let mut config = self.model.config.clone();
                            let result = match (edit.change)(&mut config) {
                                Ok(()) => self.apply(config, &edit.source),
                                Err(refused) => Err(refused.into()),
                            };
                            reply(logged(&edit.source, result));
                        }
                    }
                }
            }
        }
        self.edits(deferred);
    }

    /// Save and apply `config` (see [`Control::apply`]).
    fn apply(&mut self, config: Config, source: &str) -> Result<RevisionInfo, ControlError> {
        self.apply_as(config, source, None)
    }

    /// [`Writer::apply`]; `agreed` is the record of a revision the cluster
    /// already agreed on (followed), else the change is proposed to it first.
    fn apply_as(
        &mut self,
        mut config: Config,
        source: &str,
        agreed: Option<RevisionInfo>,
    ) -> Result<RevisionInfo, ControlError> {
        // A node in a cluster keeps its own settings ([cluster], pin_dir) whatever the change says.
        if self.cluster.is_some() {
            if config.cluster.is_some() && config.cluster != self.model.config.cluster {
                warn!(
                    "[cluster] is read at start: the running node keeps its own until it restarts"
                );
            }
            config.keep_node_settings(&self.model.config);
        }
        let new_model = Model::new(config);
        let old_model = self.model.clone();
        new_model.inherit_text(&old_model);
        let delta = Delta::between(&old_model, &new_model);
        // The running config passed: a change of some VIPs needs only those looked into again.
        let touched = (!delta.globals && self.revision > 0).then(|| {
            let positions = delta
                .new
                .iter()
                .filter_map(|v| new_model.vip_index(&v.name));
            positions.collect::<Vec<usize>>()
        });
        let known = self
            .dataplane
            .as_ref()
            .is_some_and(|l| l.programmed.is_some());
        // The first apply loads the data plane (mostly the kernel's verifier, a third of a
        // second) on another core, while this one checks the config and lists the changes.
        let load_now = self.dataplane.is_none();
        let loader = &mut self.loader;
        let (checked, load) = std::thread::scope(|scope| {
            let loading = load_now.then(|| scope.spawn(|| loader(&new_model.config)));
            let checked = validate(&new_model.config, touched.as_deref())
                .map(|()| delta.diff(&old_model, &new_model));
            let load = loading.map(|l| l.join().expect("loading the data plane does not panic"));
            (checked, load)
        });
        // A data plane loaded by this apply is removed again if the apply fails.
        let mut loaded_fresh = false;
        match load {
            Some(Ok((programmer, adopted))) => {
                loaded_fresh = !adopted;
                self.dataplane = Some(Loaded {
                    programmer,
                    pin_dir: new_model.config.pin_dir.clone(),
                    // An adopted one with no revision of ours holds something unknown.
                    programmed: (!adopted).then(DataplaneState::default),
                });
            }
            // The config's own errors come first: they may be why it could not load.
            Some(Err(error)) if checked.is_ok() => return Err(error),
            Some(Err(_)) | None => {}
        }
        let changes = match checked {
            Ok(changes) => changes,
            Err(errors) => {
                if loaded_fresh {
                    self.drop_fresh_dataplane();
                }
                return Err(ControlError::Invalid(errors));
            }
        };
        let agreed_elsewhere = agreed.is_some();
        // A followed revision is recorded even when it changes nothing here, so the numbers stay the cluster's.
        if delta.is_empty() && known && !agreed_elsewhere {
            if let Some(info) = &self.info {
                info!(revision = self.revision, source, "apply: no changes");
                return Ok(info.clone());
            }
        }
        let config = &new_model.config;
        let rolled_back_to = self.revision;

        let loaded = self.dataplane.as_mut().expect("loaded above");
        warn_on_reload_settings(loaded, config);

        // Only the touched VIPs are planned again while the globals stay and what is held is known.
        let incremental = !delta.globals && loaded.programmed.is_some();
        let limits = limits(config, loaded.programmer.as_ref());
        let planned = if incremental {
            self.ids
                .assign_touched(&delta.old, &delta.new, limits)
                .map_err(ControlError::from)
                .and_then(|ids| {
                    let health = self.health.settled_touched(&delta.new, &delta.removed);
                    let held = loaded.programmed.as_ref().expect("checked above");
                    let wanted =
                        plan_touched(held, &delta.old, &delta.new, &self.ids, &ids, &health)
                            .map_err(ControlError::Invalid)?;
                    Ok((ids, health, wanted, held.clone()))
                })
        } else {
            self.ids
                .assign(config, limits)
                .map_err(ControlError::from)
                .and_then(|ids| {
                    let health = self.health.settled(config);
                    let wanted = plan(config, &ids, &health).map_err(ControlError::Invalid)?;
                    let fallback = plan(&old_model.config, &self.ids, &self.health)
                        .map_err(ControlError::Invalid)?;
                    Ok((ids, health, wanted, fallback))
                })
        };
        let planned = planned.and_then(|(ids, health, wanted, fallback)| {
            let programmed = loaded.programmed.as_ref();
            fits_backend_addresses(programmed, &wanted, loaded.programmer.as_ref())?;
            Ok((ids, health, wanted, fallback))
        });
        let (ids, health, wanted, fallback) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                if loaded_fresh {
                    self.drop_fresh_dataplane();
                }
                return Err(error);
            }
        };
        drop(delta);
        let info = match agreed {
            Some(info) => info,
            None => RevisionInfo {
                number: self.shared.store.next_number(),
                time: std::time::SystemTime::now(),
                source: source.to_string(),
                summary: changes.summary(),
            },
        };
        // Agreed before anything is programmed: a change another node beat leaves no trace here.
        if let (Some(cluster), false) = (self.cluster.as_mut(), agreed_elsewhere) {
            if let Err(error) = cluster.propose(self.revision, &info, config) {
                if loaded_fresh {
                    self.drop_fresh_dataplane();
                }
                return Err(error);
            }
        }

        let loaded = self.dataplane.as_mut().expect("loaded above");
        if let Err(source) = loaded.program(&wanted, &fallback) {
            if loaded_fresh {
                self.drop_fresh_dataplane();
            }
            return Err(ControlError::Dataplane {
                source,
                rolled_back_to,
            });
        }

        let state_dir = &self.shared.options.state_dir;
        // Ids first: a crash before the revision leaves ids for a superset, which the next start frees.
        // A change that keeps every id (a drain, a weight) leaves the file as it is.
        let ids_changed = ids != *self.ids;
        let saved_ids = if !ids_changed {
            Ok(())
        } else if self.ids_journaled < MAX_IDS_JOURNALED {
            self.ids_journaled += 1;
            ids.save_change(&self.ids, state_dir)
        } else {
            self.ids_journaled = 0;
            ids.save(state_dir)
        };
        let text = new_model.config_text();
        let committed = saved_ids.and_then(|()| self.shared.store.commit_as(&info, &text, true));
        match committed {
            Ok(()) => {}
            Err(error) => {
                let loaded = self.dataplane.as_mut().expect("loaded above");
                if let Err(e) = loaded.program(&fallback, &wanted) {
                    warn!(error = %e, "rolling the data plane back after a failed save failed");
                }
                if ids_changed {
                    self.ids_journaled = 0;
                    if let Err(e) = self.ids.save(state_dir) {
                        warn!(error = %e, "restoring the saved ids failed");
                    }
                }
                // The config file was not touched: only a committed revision makes it due.
                if loaded_fresh {
                    self.drop_fresh_dataplane();
                }
                return Err(error);
            }
        }
        self.revision = info.number;
        self.info = Some(info.clone());
        self.ids = Arc::new(ids);
        self.health = Arc::new(health);
        self.prune(&new_model.config);
        self.model = Arc::new(new_model);
        self.publish();
        log_applied(&info);
        Ok(info)
    }

    /// Removes revisions beyond `config`'s `keep_revisions` and
    /// `keep_revisions_size`, never the running one; a failure only warns
    /// (the apply itself is done).
    fn prune(&self, config: &Config) {
        let keep = config.keep_revisions;
        let max_bytes = config.keep_revisions_size.map(|size| size.bytes());
        match self.shared.store.prune(keep as usize, max_bytes, self.revision) {
            Ok(pruned) if !pruned.is_empty() => {
                info!(
                    keep,
                    max_bytes,
                    first = pruned[0],
                    last = pruned[pruned.len() - 1],
                    "pruned old revisions"
                )
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "pruning old revisions failed"),
        }
    }

    fn set_health(&mut self, verdicts: &[(String, IpAddr, bool)]) -> Result<(), ControlError> {
        for (vip, address, _) in verdicts {
            let Some(declared) = self.model.vip(vip) else {
                return Err(ControlError::NoSuchVip(vip.clone()));
            };
            if self.model.backend(vip, *address).is_none() {
                return Err(ControlError::NoSuchBackend {
                    vip: declared.name.clone(),
                    address: *address,
                });
            }
        }
        let model = self.model.clone();
        let mut health = (*self.health).clone();
        let mut touched: Vec<&Vip> = Vec::new();
        for (vip, address, healthy) in verdicts {
            if health.set(vip, *address, *healthy) {
                info!(vip, %address, healthy, "backend health changed");
                let declared = model.vip(vip).expect("checked above");
                if !touched.iter().any(|v| v.name == declared.name) {
                    touched.push(declared);
                }
            }
        }
        if touched.is_empty() {
            return Ok(());
        }
        if let Some(loaded) = self.dataplane.as_mut() {
            let fallback = match &loaded.programmed {
                Some(held) => held.clone(),
                None => {
                    plan(&model.config, &self.ids, &self.health).map_err(ControlError::Invalid)?
                }
            };
            let wanted = plan_touched(&fallback, &touched, &touched, &self.ids, &self.ids, &health)
                .map_err(ControlError::Invalid)?;
            loaded
                .program(&wanted, &fallback)
                .map_err(|source| ControlError::Dataplane {
                    source,
                    rolled_back_to: self.revision,
                })?;
        }
        let settled = health.settled_touched(&touched, &[]);
        log_new_flows_changes(&touched, &self.health, &settled);
        self.health = Arc::new(settled);
        self.publish();
        Ok(())
    }

    fn unload(&mut self) -> Result<(), ControlError> {
        let pin_dir = match &self.dataplane {
            Some(loaded) => loaded.pin_dir.clone(),
            None => self.model.config.pin_dir.clone(),
        };
        let programmer: Option<Box<dyn Programmer>> = match self.dataplane.take() {
            Some(loaded) => Some(loaded.programmer),
            None if pin_dir.exists() => Some(Box::new(Kernel::new(
                Dataplane::open_pinned(&pin_dir)
                    .map_err(|e| dataplane_io(&pin_dir, e.to_string()))?,
                &pin_dir,
            ))),
            None => None,
        };
        // Readers drop their handle on the maps with this snapshot.
        self.publish();
        match programmer {
            Some(programmer) => {
                let interfaces = programmer.attached();
                programmer
                    .teardown()
                    .map_err(|e| dataplane_io(&pin_dir, format!("unloading it: {e}")))?;
                info!(pin_dir = %pin_dir.display(), ?interfaces, "unloaded the data plane: detached from every interface, removed its program, links and maps");
            }
            None => {
                info!(pin_dir = %pin_dir.display(), "no data plane loaded or pinned: nothing to unload")
            }
        }
        Ok(())
    }

    /// Makes the running state what readers see.
    fn publish(&self) {
        let snapshot = Arc::new(Snapshot::new(
            self.revision,
            self.model.clone(),
            self.ids.clone(),
            self.health.clone(),
            self.dataplane.as_ref().and_then(|l| l.programmer.reader()),
            self.dataplane.is_some(),
            self.shared.flows.clone(),
        ));
        *self
            .shared
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    /// Tears down a data plane loaded by a failed first apply, so nothing of it stays.
    fn drop_fresh_dataplane(&mut self) {
        if let Some(loaded) = self.dataplane.take() {
            if let Err(e) = loaded.programmer.teardown() {
                warn!(error = %e, "removing the data plane loaded by the failed apply failed");
            }
        }
    }
}

impl Loaded {
    /// Programs `wanted`, touching only what differs from what is held. On a
    /// failure, reconciles back to `fallback` (what ran before) and returns
    /// the failure; if even that fails, what is held is marked unknown.
    fn program(
        &mut self,
        wanted: &DataplaneState,
        fallback: &DataplaneState,
    ) -> Result<(), ProgramError> {
        let ops = match &self.programmed {
            Some(held) => transition(held, wanted),
            None => transition(&self.programmer.read_state(wanted)?, wanted),
        };
        let Err(error) = self.programmer.run(&ops) else {
            self.programmed = Some(wanted.clone());
            return Ok(());
        };
        warn!(%error, "programming the data plane failed; rolling back");
        let rollback = self
            .programmer
            .read_state(fallback)
            .and_then(|now| self.programmer.run(&transition(&now, fallback)));
        match rollback {
            Ok(()) => {
                self.programmed = Some(fallback.clone());
                Err(error)
            }
            Err(rollback) => {
                self.programmed = None;
                Err(ProgramError::RollbackFailed {
                    first: Box::new(error),
                    rollback: Box::new(rollback),
                })
            }
        }
    }
}

/// The id limits: the config's, within the loaded data plane's sizes.
fn limits(config: &Config, programmer: &dyn Programmer) -> Limits {
    Limits {
        max_vips: config.max_vips.min(programmer.max_vips()),
        max_backends: config.max_backends.min(programmer.max_backends()),
    }
}

/// Whether the backend addresses a change holds fit the loaded data plane's
/// next hops. A change sets its new backends before it removes the old ones
/// (see [`transition`]), so meanwhile the data plane may hold the addresses
/// it holds now and those of every backend the change sets: `programmed`'s
/// differences to `wanted`, or, when what is programmed is not known, every
/// backend of `wanted`. That bound also holds for a rollback; it may refuse
/// a change whose order of writes would fit (an id given again in the
/// change gives its old address back as it takes the new one). It never
/// holds more addresses than backend ids, though, so a data plane with a
/// next hop per id takes any change. Validation has held the config alone
/// to its `max_backend_addresses`; this also catches a limit raised without
/// a reload. Beyond counting what changes, it walks the config only to word
/// a refusal.
fn fits_backend_addresses(
    programmed: Option<&DataplaneState>,
    wanted: &DataplaneState,
    programmer: &dyn Programmer,
) -> Result<(), CapacityError> {
    let limit = programmer.max_backend_addresses();
    if programmer.max_backends() <= limit {
        return Ok(());
    }
    let set: Vec<IpAddr> = match programmed {
        Some(programmed) => {
            let (changed, _) = wanted.backends.differences(&programmed.backends);
            changed.into_iter().map(|(_, b)| b.addr).collect()
        }
        None => wanted.backends.values().map(|b| b.addr).collect(),
    };
    let held = programmer.backend_addresses();
    if held + set.len() <= limit as usize {
        return Ok(());
    }
    let mut joining = AddressSet::default();
    joining.extend(set.into_iter().filter(|addr| !programmer.holds_backend_address(*addr)));
    let during = held + joining.len();
    if during <= limit as usize {
        return Ok(());
    }
    let mut after = AddressSet::default();
    after.extend(wanted.backends.values().map(|b| b.addr));
    let (key, once_applied) = match after.len() {
        fits if fits <= limit as usize => (during, Some(fits)),
        too_many => (too_many, None),
    };
    Err(CapacityError {
        kind: IdKind::BackendAddress,
        key: format!("{key} distinct backend addresses"),
        limit,
        once_applied,
    })
}

/// Validates against this host (interfaces, local addresses, subnets): the
/// whole config, or with `touched`, the VIPs at those positions and every
/// rule across VIPs (see [`Config::validate_touched`]).
fn validate(config: &Config, touched: Option<&[usize]>) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let facts = host::host_facts().unwrap_or_else(|e| {
        errors.push(ConfigError::new(
            "interfaces",
            format!("cannot read this host's interfaces and addresses: {e}"),
        ));
        HostFacts::default()
    });
    let found = match touched {
        Some(touched) => config.validate_touched(&facts, touched),
        None => config.validate(&facts),
    };
    if let Err(found) = found {
        errors.extend(found.errors);
    }
    ConfigErrors::check(errors)
}

/// The kernel loader: adopts the data plane pinned at the config's pin_dir,
/// or loads (and pins) a new one with the config's sizes. `true` = adopted.
fn load_kernel(config: &Config) -> Result<(Box<dyn Programmer>, bool), ControlError> {
    let (dataplane, adopted) = open_or_load(config)?;
    Ok((Box::new(Kernel::new(dataplane, &config.pin_dir)), adopted))
}

fn open_or_load(config: &Config) -> Result<(Dataplane, bool), ControlError> {
    let pin_dir = &config.pin_dir;
    match Dataplane::open_pinned(pin_dir) {
        Ok(dataplane) => {
            info!(pin_dir = %pin_dir.display(), attached = ?dataplane.attached(), "adopted the pinned data plane; connections are kept");
            Ok((dataplane, true))
        }
        Err(open_error) => {
            let options = LoadOptions {
                max_vips: config.max_vips,
                max_backends: config.max_backends,
                max_backend_addresses: config.backend_address_limit(),
                ring_size: config.ring_size,
                conn_table_size: config.conn_table_size,
                pin_dir: Some(pin_dir.clone()),
            };
            match Dataplane::load(&options) {
                Ok(dataplane) => {
                    info!(pin_dir = %pin_dir.display(), ?options, "loaded a new data plane");
                    Ok((dataplane, false))
                }
                Err(DataplaneError::AlreadyPinned { .. }) => Err(dataplane_io(
                    pin_dir,
                    format!("adopting the pinned data plane: {open_error}"),
                )),
                Err(e) => Err(dataplane_io(
                    pin_dir,
                    format!("loading the data plane: {e}"),
                )),
            }
        }
    }
}

/// Map sizes and the pin directory are fixed when the data plane loads;
/// a config that changes them runs on the loaded sizes until a reload.
fn warn_on_reload_settings(loaded: &Loaded, config: &Config) {
    let programmer = &loaded.programmer;
    let settings = [
        (
            "ring_size",
            programmer.ring_size().to_string(),
            config.ring_size.to_string(),
        ),
        (
            "max_vips",
            programmer.max_vips().to_string(),
            config.max_vips.to_string(),
        ),
        (
            "max_backends",
            programmer.max_backends().to_string(),
            config.max_backends.to_string(),
        ),
        (
            "max_backend_addresses",
            programmer.max_backend_addresses().to_string(),
            config.backend_address_limit().to_string(),
        ),
        (
            "pin_dir",
            loaded.pin_dir.display().to_string(),
            config.pin_dir.display().to_string(),
        ),
    ];
    for (setting, loaded_value, configured) in settings {
        if loaded_value != configured {
            warn!(
                setting,
                loaded = loaded_value,
                configured,
                "the loaded data plane keeps its {setting} until it is reloaded (`tula dataplane unload`, then start the daemon; this drops the connection table)"
            );
        }
    }
}

/// Logs each VIP whose new flows go somewhere else after a health change:
/// the moments its all_down policy starts and stops deciding.
fn log_new_flows_changes(vips: &[&Vip], before: &Health, after: &Health) {
    for vip in vips {
        let (was, _) = ring_members(vip, before);
        let (now, members) = ring_members(vip, after);
        if was == now {
            continue;
        }
        let members: Vec<String> = members.iter().map(|(a, _)| a.to_string()).collect();
        match now {
            NewFlows::Backends => {
                info!(vip = %vip.name, "a backend is up again: new flows go to the backends that are up")
            }
            NewFlows::Dropped => {
                warn!(vip = %vip.name, "no backend is up: new flows are dropped (all_down = \"drop\")")
            }
            NewFlows::KeptLast => {
                warn!(vip = %vip.name, backends = ?members, "no backend is up: new flows keep going to the backends that were up last (all_down = \"keep-last\")")
            }
            NewFlows::Sorry => {
                warn!(vip = %vip.name, sorry_backend = ?members, "no backend is up: new flows go to the sorry backend (all_down = \"sorry\")")
            }
        }
    }
}

/// Caps glibc's heap at two arenas (`M_ARENA_MAX`). By default a thread may
/// get an arena of its own (up to eight per core), and what the API's threads
/// free stays spread over them in pages malloc_trim cannot return: at 1,000 x
/// 100, after 100 concurrent drains the daemon held 138 MiB after idling with
/// the default and 68 MiB with two (docs/BENCHMARKS.md). For a daemon's main,
/// before it starts threads.
pub fn limit_heap_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; it is safe to call at any time.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the heap memory freed since to the system. glibc keeps what a
/// thread freed in that thread's arena: the copies of an apply at 1,000 x 100
/// and the answers of 100 concurrent requests (on as many threads) would stay
/// resident for good. Run by the writer after its queue empties (the replies
/// are sent by then) and when it has been idle a while.
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free pages; it is safe to call at any time.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

fn dataplane_io(pin_dir: &Path, message: String) -> ControlError {
    ControlError::DataplaneIo {
        pin_dir: pin_dir.to_path_buf(),
        message,
    }
}

/// The result, its failure logged with the change's source.
fn logged(
    source: &str,
    result: Result<RevisionInfo, ControlError>,
) -> Result<RevisionInfo, ControlError> {
    if let Err(error) = &result {
        warn!(source, %error, "not applied");
    }
    result
}

fn log_applied(info: &RevisionInfo) {
    info!(revision = info.number, source = %info.source, changes = info.summary.len(), "applied");
    for change in &info.summary {
        info!(revision = info.number, %change, "changed");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<super::Control>();
        shareable::<crate::Snapshot>();
    }
}
