//! [`Control`]: the running config and revision, the data plane that runs it,
//! and the operations on them (start, apply, rollback, health, status, unload).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tracing::{info, warn};
use tula_config::{Config, ConfigError, ConfigErrors, HostFacts};
use tula_dataplane::{Counters, Dataplane, DataplaneError, LoadOptions};

use crate::diff::diff;
use crate::health::Health;
use crate::ids::Ids;
use crate::plan::{plan, ring_members, transition, DataplaneState};
use crate::program::{read_state, run};
use crate::store::Store;
use crate::{
    host, status, ControlError, ControlOptions, Diff, NewFlows, RevisionInfo, Serving, VipServing,
    VipStatus,
};

/// The load balancer's running state. Methods take `&self` (it locks inside),
/// so the API shares one `Arc<Control>` between handlers.
pub struct Control {
    options: ControlOptions,
    store: Store,
    running: Mutex<Running>,
}

/// Everything behind the lock.
struct Running {
    /// 0 = nothing applied yet.
    revision: u64,
    config: Config,
    ids: Ids,
    health: Health,
    /// Loaded or adopted at start, or at the first apply.
    dataplane: Option<LoadedDataplane>,
}

struct LoadedDataplane {
    dataplane: Dataplane,
    pin_dir: PathBuf,
    /// What it holds, as planned; `None` when a failed rollback left that unknown,
    /// so the next change first reads back what it really holds.
    programmed: Option<DataplaneState>,
}

impl Control {
    /// Opens the state, adopts a pinned data plane (or loads a new one), and
    /// reconciles it to the saved config without flushing connections.
    ///
    /// The config file wins: if it differs from the last revision (edited by
    /// hand), it is validated, applied and recorded as a new revision. With
    /// no config file and no revision, nothing is loaded until the first apply.
    pub fn start(options: ControlOptions) -> Result<Control, ControlError> {
        let store = Store::open(&options)?;
        let ids = Ids::load(&options.state_dir)?;
        let latest = store.latest()?;
        let running = Running {
            revision: 0,
            config: Config::default(),
            ids,
            health: Health::default(),
            dataplane: None,
        };
        let previous = match &latest {
            Some(latest) => store.revision(latest.number)?,
            None => Config::default(),
        };
        // (config, its text, whether it is new and must be recorded)
        let (config, text, is_new) = match (store.config_text()?, &latest) {
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
                return Ok(Control {
                    options,
                    store,
                    running: Mutex::new(running),
                });
            }
        };
        let control = Control {
            options,
            store,
            running: Mutex::new(Running {
                revision: latest.as_ref().map_or(0, |l| l.number),
                ..running
            }),
        };
        control.validate(&config).map_err(ControlError::Invalid)?;

        let mut running = control.lock();
        let ids = running
            .ids
            .assign(&config)
            .map_err(|message| dataplane_io(&config.pin_dir, message))?;
        let wanted = plan(&config, &ids, &running.health).map_err(ControlError::Invalid)?;
        let (dataplane, adopted) = open_or_load(&config)?;
        let mut loaded = LoadedDataplane {
            dataplane,
            pin_dir: config.pin_dir.clone(),
            programmed: None,
        };
        warn_on_reload_settings(&loaded, &config);
        let held = if adopted {
            read_state(&loaded.dataplane, &wanted).map_err(|m| dataplane_io(&config.pin_dir, m))?
        } else {
            DataplaneState::default()
        };
        let ops = transition(&held, &wanted);
        if let Err(message) = run(&mut loaded.dataplane, &ops) {
            if !adopted {
                // Nothing stays of a data plane loaded just now.
                let _ = loaded.dataplane.teardown();
            }
            return Err(dataplane_io(
                &config.pin_dir,
                format!("reconciling it to the saved config: {message}"),
            ));
        }
        loaded.programmed = Some(wanted);
        ids.save(&control.options.state_dir)?;
        running.health = running.health.settled(&config);
        running.ids = ids;
        running.dataplane = Some(loaded);
        if is_new {
            let source = format!("start: {}", control.store.config_path().display());
            let info =
                control
                    .store
                    .commit(&text, &source, diff(&previous, &config).summary(), false)?;
            log_applied(&info);
            running.revision = info.number;
        }
        running.config = config;
        info!(
            revision = running.revision,
            adopted,
            operations = ops.len(),
            "started: the data plane runs the saved config"
        );
        drop(running);
        Ok(control)
    }

    /// The config the data plane runs, and its revision number (0 = none yet).
    pub fn running(&self) -> (u64, Config) {
        let running = self.lock();
        (running.revision, running.config.clone())
    }

    /// The config file on disk (may differ from `running` if edited by hand).
    pub fn saved(&self) -> Result<Config, ControlError> {
        self.store.saved()?.ok_or_else(|| ControlError::Io {
            what: format!("reading {}", self.store.config_path().display()),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    /// Validates against this host (interfaces, local addresses, subnets);
    /// every problem at once.
    pub fn validate(&self, config: &Config) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let facts = host::host_facts().unwrap_or_else(|e| {
            errors.push(ConfigError::new(
                "interfaces",
                format!("cannot read this host's interfaces and addresses: {e}"),
            ));
            HostFacts::default()
        });
        if let Err(found) = config.validate(&facts) {
            errors.extend(found.errors);
        }
        ConfigErrors::check(errors)
    }

    /// What applying `config` would change, compared with the running config.
    pub fn diff(&self, config: &Config) -> Diff {
        diff(&self.lock().config, config)
    }

    /// Save and apply: validate, program the data plane by diff (rolling back on
    /// failure), then write the file and the revision atomically.
    ///
    /// A config equal to the running one programs nothing new and returns the
    /// running revision instead of recording another.
    pub fn apply(&self, config: Config, source: &str) -> Result<RevisionInfo, ControlError> {
        self.validate(&config).map_err(ControlError::Invalid)?;
        let mut running = self.lock();
        let changes = diff(&running.config, &config);
        let rolled_back_to = running.revision;
        let failed = |message: String| ControlError::Dataplane {
            message,
            rolled_back_to,
        };

        // A data plane loaded by this apply is removed again if the apply fails.
        let mut loaded_fresh = false;
        if running.dataplane.is_none() {
            let (dataplane, adopted) = open_or_load(&config)?;
            loaded_fresh = !adopted;
            running.dataplane = Some(LoadedDataplane {
                dataplane,
                pin_dir: config.pin_dir.clone(),
                // An adopted one with no revision of ours holds something unknown.
                programmed: (!adopted).then(DataplaneState::default),
            });
        }
        warn_on_reload_settings(running.dataplane.as_ref().expect("loaded above"), &config);

        let ids = running.ids.assign(&config).map_err(failed)?;
        let health = running.health.settled(&config);
        let wanted = plan(&config, &ids, &health).map_err(ControlError::Invalid)?;
        let old_wanted =
            plan(&running.config, &running.ids, &running.health).map_err(ControlError::Invalid)?;
        let loaded = running.dataplane.as_mut().expect("loaded above");
        if let Err(message) = loaded.program(&wanted, &old_wanted) {
            if loaded_fresh {
                self.drop_fresh_dataplane(&mut running);
            }
            return Err(failed(message));
        }

        if changes.is_empty() && running.revision > 0 {
            info!(revision = running.revision, source, "apply: no changes");
            let revision = running.revision;
            drop(running);
            return self
                .store
                .history()?
                .into_iter()
                .find(|r| r.number == revision)
                .ok_or(ControlError::NoSuchRevision(revision));
        }
        // Ids first: a crash before the revision leaves ids for a superset, which the next start frees.
        let committed = ids.save(&self.options.state_dir).and_then(|()| {
            self.store
                .commit(&config.to_toml_string(), source, changes.summary(), true)
        });
        let info = match committed {
            Ok(info) => info,
            Err(e) => {
                let loaded = running.dataplane.as_mut().expect("loaded above");
                if let Err(message) = loaded.program(&old_wanted, &wanted) {
                    warn!(error = %message, "rolling the data plane back after a failed save failed");
                }
                if let Err(e) = running.ids.save(&self.options.state_dir) {
                    warn!(error = %e, "restoring the saved ids failed");
                }
                if loaded_fresh {
                    self.drop_fresh_dataplane(&mut running);
                }
                return Err(e);
            }
        };
        running.revision = info.number;
        running.config = config;
        running.ids = ids;
        running.health = health.settled(&running.config);
        log_applied(&info);
        Ok(info)
    }

    /// Every revision, oldest first.
    pub fn history(&self) -> Result<Vec<RevisionInfo>, ControlError> {
        self.store.history()
    }

    /// Revision `number`'s config.
    pub fn revision(&self, number: u64) -> Result<Config, ControlError> {
        self.store.revision(number)
    }

    /// Applies revision `number` again, recorded as a new revision.
    pub fn rollback(&self, number: u64) -> Result<RevisionInfo, ControlError> {
        let config = self.store.revision(number)?;
        self.apply(config, &format!("rollback to {number}"))
    }

    /// The running revision (0 = none yet). Cheap: a watcher polls it and
    /// re-reads [`Control::running`] when it changes.
    pub fn running_revision(&self) -> u64 {
        self.lock().revision
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
        let mut running = self.lock();
        for &(vip, address, _) in verdicts {
            let Some(declared) = running.config.vip(vip) else {
                return Err(ControlError::NoSuchVip(vip.to_string()));
            };
            if !declared.backends.iter().any(|b| b.address == address) {
                return Err(ControlError::NoSuchBackend {
                    vip: vip.to_string(),
                    address,
                });
            }
        }
        let mut health = running.health.clone();
        let changed: Vec<(&str, IpAddr, bool)> = verdicts
            .iter()
            .copied()
            .filter(|&(vip, address, healthy)| health.set(vip, address, healthy))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        if running.dataplane.is_some() {
            let wanted =
                plan(&running.config, &running.ids, &health).map_err(ControlError::Invalid)?;
            let old_wanted = plan(&running.config, &running.ids, &running.health)
                .map_err(ControlError::Invalid)?;
            let rolled_back_to = running.revision;
            let loaded = running.dataplane.as_mut().expect("checked above");
            loaded
                .program(&wanted, &old_wanted)
                .map_err(|message| ControlError::Dataplane {
                    message,
                    rolled_back_to,
                })?;
        }
        for (vip, address, healthy) in changed {
            info!(vip, %address, healthy, "backend health changed");
        }
        let health = health.settled(&running.config);
        log_new_flows_changes(&running.config, &running.health, &health);
        running.health = health;
        Ok(())
    }

    /// Per-VIP and per-backend status of the running config.
    pub fn status(&self) -> Result<Vec<VipStatus>, ControlError> {
        let running = self.lock();
        let loaded = running.dataplane.as_ref();
        status::status(
            &running.config,
            &running.ids,
            &running.health,
            loaded.map(|l| &l.dataplane),
        )
        .map_err(|message| dataplane_io(&running.pin_dir(), message))
    }

    /// What this node can serve, without reading any map: whether a data plane
    /// is loaded, where it is attached, and where each VIP's new flows go.
    /// Cheap enough to poll (the BGP announcer does).
    pub fn serving(&self) -> Serving {
        let running = self.lock();
        Serving {
            loaded: running.dataplane.is_some(),
            interfaces: running.config.interfaces.clone(),
            vips: running
                .config
                .vips
                .iter()
                .map(|vip| VipServing {
                    name: vip.name.clone(),
                    address: vip.address,
                    new_flows: ring_members(vip, &running.health).0,
                })
                .collect(),
        }
    }

    /// The data plane's global counters (all zero before anything is loaded).
    pub fn counters(&self) -> Result<Counters, ControlError> {
        let running = self.lock();
        match &running.dataplane {
            None => Ok(Counters::default()),
            Some(loaded) => loaded
                .dataplane
                .counters()
                .map_err(|e| dataplane_io(&loaded.pin_dir, e.to_string())),
        }
    }

    /// Removes every program, link and map (`tula dataplane unload`): traffic
    /// to the VIPs is no longer balanced. The saved config and revisions stay;
    /// the next apply (or start) loads a new data plane.
    pub fn unload(&self) -> Result<(), ControlError> {
        let mut running = self.lock();
        let pin_dir = running.pin_dir();
        let dataplane = match running.dataplane.take() {
            Some(loaded) => Some(loaded.dataplane),
            None if pin_dir.exists() => Some(
                Dataplane::open_pinned(&pin_dir)
                    .map_err(|e| dataplane_io(&pin_dir, e.to_string()))?,
            ),
            None => None,
        };
        match dataplane {
            Some(dataplane) => {
                let interfaces = dataplane.attached();
                dataplane
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

    fn lock(&self) -> MutexGuard<'_, Running> {
        // A panic while programming leaves the state as the last completed step; keep serving.
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tears down a data plane loaded by a failed first apply, so nothing of it stays.
    fn drop_fresh_dataplane(&self, running: &mut Running) {
        if let Some(loaded) = running.dataplane.take() {
            if let Err(e) = loaded.dataplane.teardown() {
                warn!(error = %e, "removing the data plane loaded by the failed apply failed");
            }
        }
    }
}

impl Running {
    /// Where the data plane is (or would be) pinned.
    fn pin_dir(&self) -> PathBuf {
        match &self.dataplane {
            Some(loaded) => loaded.pin_dir.clone(),
            None => self.config.pin_dir.clone(),
        }
    }
}

impl LoadedDataplane {
    /// Programs `wanted`, touching only what differs from what is held. On a
    /// failure, reconciles back to `fallback` (what ran before) and returns
    /// the failure; if even that fails, what is held is marked unknown.
    fn program(
        &mut self,
        wanted: &DataplaneState,
        fallback: &DataplaneState,
    ) -> Result<(), String> {
        let held = match &self.programmed {
            Some(held) => held.clone(),
            None => read_state(&self.dataplane, wanted)?,
        };
        let ops = transition(&held, wanted);
        let Err(message) = run(&mut self.dataplane, &ops) else {
            self.programmed = Some(wanted.clone());
            return Ok(());
        };
        warn!(error = %message, "programming the data plane failed; rolling back");
        let rollback = read_state(&self.dataplane, fallback)
            .and_then(|now| run(&mut self.dataplane, &transition(&now, fallback)));
        match rollback {
            Ok(()) => {
                self.programmed = Some(fallback.clone());
                Err(message)
            }
            Err(rollback_error) => {
                self.programmed = None;
                Err(format!("{message}; rolling back failed too ({rollback_error}): the next change reconciles the data plane from what it holds"))
            }
        }
    }
}

/// Adopts the data plane pinned at the config's pin_dir, or loads (and pins)
/// a new one with the config's sizes. `true` = adopted.
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
fn warn_on_reload_settings(loaded: &LoadedDataplane, config: &Config) {
    let dataplane = &loaded.dataplane;
    let settings = [
        (
            "ring_size",
            dataplane.ring_size().to_string(),
            config.ring_size.to_string(),
        ),
        (
            "max_vips",
            dataplane.max_vips().to_string(),
            config.max_vips.to_string(),
        ),
        (
            "max_backends",
            dataplane.max_backends().to_string(),
            config.max_backends.to_string(),
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
fn log_new_flows_changes(config: &Config, before: &Health, after: &Health) {
    for vip in &config.vips {
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

fn dataplane_io(pin_dir: &Path, message: String) -> ControlError {
    ControlError::DataplaneIo {
        pin_dir: pin_dir.to_path_buf(),
        message,
    }
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
    }
}
