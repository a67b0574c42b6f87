//! [`Checker`]: follows the running config of a [`Control`], runs one task
//! per checked (VIP, backend) that probes on the check's schedule, and hands
//! the state changes to Control, in batches.
//!
//! Tasks:
//! - the watcher re-reads the running config when its revision changes (or
//!   when told with [`Checker::config_changed`]) and starts, restarts or
//!   stops probe tasks to match it;
//! - one probe task per (VIP, backend): probes at a fixed offset within the
//!   interval (spread by a hash of the pair, so probes never come in bursts),
//!   feeds the results to the backend's [`Tracker`];
//! - the verdict task programs changes with [`Control::set_health_many`],
//!   everything that arrived since its last call at once.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, warn};
use tula_config::Config;
use tula_control::{Control, ControlError};

use crate::probe::{self, ProbeContext};
use crate::target::{self, Probe, Target};
use crate::tracker::Tracker;
use crate::tunnel::TunnelProbes;
use crate::{BackendHealth, CheckCounts, CheckResult, HealthState, Outcome, Transition};

/// How often the watcher looks at the running revision.
const CONFIG_POLL: Duration = Duration::from_secs(1);
/// Wait before programming verdicts again after the data plane refused them.
const VERDICT_RETRY: Duration = Duration::from_secs(1);

/// The running health checker. Clones share it; it stops when the last one
/// is dropped (or at [`Checker::stop`]).
#[derive(Clone)]
pub struct Checker {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.stop(&self.tasks);
    }
}

/// What the tasks share.
struct Shared {
    control: Arc<Control>,
    runtime: Handle,
    clock: Clock,
    probes: Arc<ProbeContext>,
    checked: Mutex<Checked>,
    totals: Totals,
    reload: Notify,
    verdicts: mpsc::UnboundedSender<Verdict>,
}

/// The checked backends, in config order.
#[derive(Default)]
struct Checked {
    order: Vec<(String, IpAddr)>,
    entries: HashMap<(String, IpAddr), Entry>,
}

struct Entry {
    target: Target,
    /// The socket mark of a tunnel probe.
    mark: Option<u32>,
    tracker: Arc<Mutex<Tracker>>,
    task: AbortHandle,
}

/// A state change for Control: up = healthy.
struct Verdict {
    vip: String,
    address: IpAddr,
    up: bool,
}

impl Checker {
    /// Starts checking the backends of `control`'s running config on
    /// `runtime`, and keeps following that config. Probe sockets and the
    /// tunnel program act in the network namespace of the runtime's threads.
    pub fn spawn(control: Arc<Control>, runtime: &Handle) -> Checker {
        let _entered = runtime.enter();
        let (verdicts, verdicts_in) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            control: control.clone(),
            runtime: runtime.clone(),
            clock: Clock::start(),
            probes: Arc::new(ProbeContext::default()),
            checked: Mutex::new(Checked::default()),
            totals: Totals::default(),
            reload: Notify::new(),
            verdicts,
        });
        let watcher = runtime.spawn(watch_config(shared.clone()));
        let programmer = runtime.spawn(program_verdicts(control, verdicts_in));
        Checker {
            inner: Arc::new(Inner {
                shared,
                tasks: vec![watcher.abort_handle(), programmer.abort_handle()],
            }),
        }
    }

    /// Every checked backend's health, in config order.
    pub fn snapshot(&self) -> Vec<BackendHealth> {
        let checked = lock(&self.inner.shared.checked);
        checked
            .order
            .iter()
            .filter_map(|key| checked.entries.get(key))
            .map(Entry::health)
            .collect()
    }

    /// One backend's health; `None` if it is not checked (unknown, or its VIP's check is `none`).
    pub fn backend(&self, vip: &str, address: IpAddr) -> Option<BackendHealth> {
        lock(&self.inner.shared.checked)
            .entries
            .get(&(vip.to_string(), address))
            .map(Entry::health)
    }

    /// Checks and state changes of all backends since the checker started,
    /// those no longer checked included: for counters in metrics.
    pub fn counts(&self) -> CheckCounts {
        self.inner.shared.totals.get()
    }

    /// Re-reads the running config now rather than at the next poll (call it after an apply).
    pub fn config_changed(&self) {
        self.inner.shared.reload.notify_one();
    }

    /// Stops every probe and removes the tunnel program. The backends keep
    /// the health they have in Control.
    pub fn stop(&self) {
        self.inner.shared.stop(&self.inner.tasks);
    }
}

impl Shared {
    fn stop(&self, tasks: &[AbortHandle]) {
        for task in tasks {
            task.abort();
        }
        let mut checked = lock(&self.checked);
        for entry in checked.entries.values() {
            entry.task.abort();
        }
        checked.entries.clear();
        checked.order.clear();
        *lock(&self.probes.tunnel) = None;
    }

    /// Makes the probe tasks match `config`.
    async fn reconcile(self: &Arc<Self>, config: &Config) {
        let targets = target::targets(config);
        let tunnels: Vec<_> = targets
            .iter()
            .filter_map(|t| match &t.probe {
                Probe::Tunnel(probe) => Some((t.key(), probe.clone())),
                _ => None,
            })
            .collect();
        let https = targets
            .iter()
            .any(|t| matches!(&t.probe, Probe::Http(h) if h.tls.is_some()));
        let probes = self.probes.clone();
        let interfaces = config.interfaces.clone();
        let marks = tokio::task::spawn_blocking(move || {
            set_up_probes(&probes, &interfaces, &tunnels, https)
        })
        .await
        .unwrap_or_default();

        let mut checked = lock(&self.checked);
        let mut before = std::mem::take(&mut checked.entries);
        let mut order = Vec::with_capacity(targets.len());
        let (mut started, mut restarted) = (0, 0);
        for target in targets {
            let key = target.key();
            let mark = marks.get(&key).copied();
            order.push(key.clone());
            let entry = match before.remove(&key) {
                Some(entry) if entry.target == target && entry.mark == mark => entry,
                Some(entry) => {
                    entry.task.abort();
                    restarted += 1;
                    self.start(target, mark, entry.tracker)
                }
                None => {
                    started += 1;
                    let tracker = Arc::new(Mutex::new(Tracker::new(self.clock.now())));
                    self.start(target, mark, tracker)
                }
            };
            checked.entries.insert(key, entry);
        }
        let stopped = before.len();
        for ((vip, address), entry) in before {
            entry.task.abort();
            let still_declared = config
                .vip(&vip)
                .is_some_and(|v| v.backends.iter().any(|b| b.address == address));
            // An unchecked backend counts as up (check type "none").
            if still_declared && lock(&entry.tracker).state() == HealthState::Down {
                info!(vip, backend = %address, "no longer checked: counts as up again");
                let _ = self.verdicts.send(Verdict {
                    vip,
                    address,
                    up: true,
                });
            }
        }
        checked.order = order;
        info!(
            checked = checked.entries.len(),
            started, restarted, stopped, "health checks follow the running config"
        );
    }

    /// Starts the probe task of `target`.
    fn start(
        self: &Arc<Self>,
        target: Target,
        mark: Option<u32>,
        tracker: Arc<Mutex<Tracker>>,
    ) -> Entry {
        let shared = self.clone();
        let task_target = target.clone();
        let task_tracker = tracker.clone();
        let task = self.runtime.spawn(async move {
            let target = task_target;
            let offset = spread(&target.key(), target.interval);
            let probes = shared.probes.clone();
            let report = |outcome: Outcome, change: Option<&Transition>| {
                shared.totals.add(outcome, change);
                if let Some(change) = change {
                    log_transition(&target, change);
                    let _ = shared.verdicts.send(Verdict {
                        vip: target.vip.clone(),
                        address: target.address,
                        up: change.to == HealthState::Up,
                    });
                }
            };
            probe_on_schedule(
                &Schedule::of(&target, offset),
                shared.clock,
                &task_tracker,
                || probe::run(&target.probe, mark, target.timeout, &probes),
                report,
            )
            .await
        });
        Entry {
            target,
            mark,
            tracker,
            task: task.abort_handle(),
        }
    }
}

/// Loads TLS roots and the tunnel program as the targets need them; returns
/// each tunnel-checked pair's socket mark. Blocking (files, BPF, netlink).
fn set_up_probes(
    probes: &ProbeContext,
    interfaces: &[String],
    tunnels: &[((String, IpAddr), crate::target::TunnelProbe)],
    https: bool,
) -> BTreeMap<(String, IpAddr), u32> {
    if https {
        probes
            .tls
            .get_or_init(crate::tls::TlsClients::with_system_roots);
    }
    let mut tunnel = lock(&probes.tunnel);
    if tunnels.is_empty() {
        if tunnel.take().is_some() {
            info!("no tunnel checks left: removed the tunnel probe program");
        }
        return BTreeMap::new();
    }
    if !matches!(*tunnel, Some(Ok(_))) {
        *tunnel = Some(TunnelProbes::load());
    }
    let program = match tunnel.as_mut().expect("set above") {
        Ok(program) => program,
        Err(why) => {
            error!(error = %why, "tunnel checks cannot run; their backends keep their state");
            return BTreeMap::new();
        }
    };
    if let Err(why) = program.attach_to(interfaces) {
        // Probes whose route leaves by that interface report it (the program never sees them).
        error!(error = %why, "tunnel probes");
    }
    program.set_targets(tunnels).unwrap_or_else(|why| {
        error!(error = %why, "tunnel probes");
        BTreeMap::new()
    })
}

fn log_transition(target: &Target, change: &Transition) {
    let (vip, backend, check, cause) = (
        &target.vip,
        target.address,
        target.check,
        &change.cause.detail,
    );
    match change.to {
        HealthState::Down => {
            warn!(vip, %backend, %check, cause, fall = target.fall, "backend down")
        }
        HealthState::Up => info!(vip, %backend, %check, cause, rise = target.rise, "backend up"),
    }
}

/// When a target probes: `offset` after it starts, then every `interval`.
struct Schedule {
    offset: Duration,
    interval: Duration,
    rise: u32,
    fall: u32,
}

impl Schedule {
    fn of(target: &Target, offset: Duration) -> Schedule {
        Schedule {
            offset,
            interval: target.interval,
            rise: target.rise,
            fall: target.fall,
        }
    }
}

/// Probes on `schedule` for ever, feeding each result to `tracker` and
/// telling `report` its outcome and the state change it completed. A probe
/// that runs late delays the later ones instead of bunching them up.
async fn probe_on_schedule<P, F>(
    schedule: &Schedule,
    clock: Clock,
    tracker: &Mutex<Tracker>,
    mut probe: P,
    mut report: impl FnMut(Outcome, Option<&Transition>),
) where
    P: FnMut() -> F,
    F: Future<Output = (Outcome, String)>,
{
    let mut ticks = tokio::time::interval_at(Instant::now() + schedule.offset, schedule.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        let (outcome, detail) = probe().await;
        let result = CheckResult {
            time: clock.now(),
            outcome,
            detail,
            took: started.elapsed(),
        };
        let change = lock(tracker).record(result, schedule.rise, schedule.fall);
        report(outcome, change.as_ref());
    }
}

/// Where in the interval a (VIP, backend) pair probes: a hash of the pair,
/// so probes are spread evenly over the interval and a pair keeps its place.
fn spread(key: &(String, IpAddr), interval: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(fraction)
}

/// Re-reads the running config when its revision changes.
async fn watch_config(shared: Arc<Shared>) {
    let mut seen = None;
    loop {
        // The published snapshot: no copy of the config, no lock.
        let snapshot = shared.control.snapshot();
        if seen != Some(snapshot.revision()) {
            shared.reconcile(snapshot.config()).await;
            seen = Some(snapshot.revision());
        }
        tokio::select! {
            _ = shared.reload.notified() => {}
            _ = tokio::time::sleep(CONFIG_POLL) => {}
        }
    }
}

/// Programs verdicts into Control: all that arrived since the last call, the
/// latest per backend, as one change.
async fn program_verdicts(control: Arc<Control>, mut verdicts: mpsc::UnboundedReceiver<Verdict>) {
    let mut pending: BTreeMap<(String, IpAddr), bool> = BTreeMap::new();
    loop {
        if pending.is_empty() {
            match verdicts.recv().await {
                Some(v) => pending.insert((v.vip, v.address), v.up),
                None => return,
            };
        }
        while let Ok(v) = verdicts.try_recv() {
            pending.insert((v.vip, v.address), v.up);
        }
        let batch = std::mem::take(&mut pending);
        let control_now = control.clone();
        let programmed = tokio::task::spawn_blocking(move || {
            let list: Vec<(&str, IpAddr, bool)> = batch
                .iter()
                .map(|((vip, a), up)| (vip.as_str(), *a, *up))
                .collect();
            let result = control_now.set_health_many(&list);
            match &result {
                // The config changed under these verdicts: keep those for backends still in it.
                Err(ControlError::NoSuchVip(_) | ControlError::NoSuchBackend { .. }) => {
                    let snapshot = control_now.snapshot();
                    let kept = batch
                        .into_iter()
                        .filter(|((vip, address), _)| snapshot.backend(vip, *address).is_some())
                        .collect();
                    (result, kept)
                }
                Err(_) => (result, batch),
                Ok(()) => (result, BTreeMap::new()),
            }
        })
        .await;
        match programmed {
            Ok((Ok(()), _)) => {}
            Ok((Err(ControlError::NoSuchVip(_) | ControlError::NoSuchBackend { .. }), kept)) => {
                debug!(
                    kept = kept.len(),
                    "health verdicts raced a config change; retrying those still in the config"
                );
                pending = kept;
            }
            Ok((Err(e), batch)) => {
                error!(error = %e, verdicts = batch.len(), "programming health changes failed; retrying");
                pending = batch;
                tokio::time::sleep(VERDICT_RETRY).await;
            }
            Err(e) => error!(error = %e, "the health verdict task panicked"),
        }
    }
}

impl Entry {
    fn health(&self) -> BackendHealth {
        let tracker = lock(&self.tracker);
        BackendHealth {
            vip: self.target.vip.clone(),
            address: self.target.address,
            check: self.target.check,
            state: tracker.state(),
            since: tracker.since(),
            last_result: tracker.last_result().cloned(),
            history: tracker.history().cloned().collect(),
            counts: tracker.counts(),
        }
    }
}

/// Wall-clock time that follows tokio's clock: the checker's start time plus
/// the monotonic time since (paused and advanced in tests).
#[derive(Debug, Clone, Copy)]
struct Clock {
    system: SystemTime,
    instant: Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            system: SystemTime::now(),
            instant: Instant::now(),
        }
    }

    fn now(&self) -> SystemTime {
        self.system + self.instant.elapsed()
    }
}

/// All backends' counts, kept past a backend's removal.
#[derive(Default)]
struct Totals {
    passed: AtomicU64,
    failed: AtomicU64,
    errors: AtomicU64,
    went_down: AtomicU64,
    went_up: AtomicU64,
}

impl Totals {
    fn add(&self, outcome: Outcome, change: Option<&Transition>) {
        let counter = match outcome {
            Outcome::Pass => &self.passed,
            Outcome::Fail => &self.failed,
            Outcome::Error => &self.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match change.map(|c| c.to) {
            Some(HealthState::Down) => self.went_down.fetch_add(1, Ordering::Relaxed),
            Some(HealthState::Up) => self.went_up.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
    }

    fn get(&self) -> CheckCounts {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CheckCounts {
            passed: read(&self.passed),
            failed: read(&self.failed),
            errors: read(&self.errors),
            went_down: read(&self.went_down),
            went_up: read(&self.went_up),
        }
    }
}

/// Locks, ignoring poisoning: every critical section leaves its data whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A backend simulated in tokio's paused clock: it answers at once while
    /// alive; dead, it refuses at once or gives no answer until the timeout.
    struct SimulatedBackend {
        alive: AtomicBool,
        hangs_when_dead: bool,
        timeout: Duration,
    }

    impl SimulatedBackend {
        async fn probe(&self) -> (Outcome, String) {
            if self.alive.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(2)).await;
                (Outcome::Pass, "connected".into())
            } else if self.hangs_when_dead {
                tokio::time::sleep(self.timeout).await;
                (Outcome::Fail, "no answer".into())
            } else {
                (Outcome::Fail, "refused".into())
            }
        }
    }

    /// Kills the backend `death` after one of its probes started, waits for
    /// it to go down, revives it and waits for it to come up; returns both delays.
    async fn down_and_up_delays(
        schedule: Schedule,
        timeout: Duration,
        hangs: bool,
        death: Duration,
    ) -> (Duration, Duration) {
        let backend = Arc::new(SimulatedBackend {
            alive: AtomicBool::new(true),
            hangs_when_dead: hangs,
            timeout,
        });
        let (changes, mut changed) = mpsc::unbounded_channel();
        let clock = Clock::start();
        let start = Instant::now();
        let offset = schedule.offset;
        let interval = schedule.interval;
        let task = tokio::spawn({
            let backend = backend.clone();
            async move {
                let tracker = Mutex::new(Tracker::new(clock.now()));
                probe_on_schedule(
                    &schedule,
                    clock,
                    &tracker,
                    || backend.probe(),
                    |_, change| {
                        if let Some(change) = change {
                            changes.send((Instant::now(), change.to)).unwrap();
                        }
                    },
                )
                .await
            }
        });
        // The third probe starts at offset + 2 intervals.
        tokio::time::sleep_until(start + offset + interval * 2 + death).await;
        backend.alive.store(false, Ordering::SeqCst);
        let died = Instant::now();
        let (at, state) = changed.recv().await.unwrap();
        assert_eq!(state, HealthState::Down);
        let down = at - died;
        backend.alive.store(true, Ordering::SeqCst);
        let revived = Instant::now();
        let (at, state) = changed.recv().await.unwrap();
        assert_eq!(state, HealthState::Up);
        task.abort();
        (down, at - revived)
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_come_within_the_documented_bounds() {
        // The defaults: interval 2s, timeout 1s, rise 2, fall 3.
        let (interval, timeout, rise, fall) =
            (Duration::from_secs(2), Duration::from_secs(1), 2, 3);
        let mut worst = (Duration::ZERO, Duration::ZERO);
        for hangs in [false, true] {
            for death_ms in [0, 1, 3, 500, 999, 1000, 1001, 1500, 1999] {
                let schedule = Schedule {
                    offset: Duration::from_millis(700),
                    interval,
                    rise,
                    fall,
                };
                let (down, up) =
                    down_and_up_delays(schedule, timeout, hangs, Duration::from_millis(death_ms))
                        .await;
                let case = format!("hangs={hangs}, death {death_ms} ms into a probe interval: down after {down:?}, up after {up:?}");
                assert!(down <= interval * fall + timeout, "{case}");
                assert!(
                    down >= interval * (fall - 1),
                    "fewer than fall probes: {case}"
                );
                assert!(up <= interval * rise + timeout, "{case}");
                assert!(
                    up >= interval * (rise - 1),
                    "fewer than rise probes: {case}"
                );
                worst = (worst.0.max(down), worst.1.max(up));
            }
        }
        // Death just after a probe passed is the worst case: fall more intervals, then the timeout.
        assert_eq!(
            worst.0,
            interval * fall + timeout - Duration::from_millis(1),
            "the bound is tight"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn probes_keep_their_place_in_the_interval() {
        let interval = Duration::from_millis(500);
        let schedule = Schedule {
            offset: Duration::from_millis(123),
            interval,
            rise: 1,
            fall: 1,
        };
        let starts = Arc::new(Mutex::new(Vec::new()));
        let clock = Clock::start();
        let start = Instant::now();
        let task = tokio::spawn({
            let starts = starts.clone();
            async move {
                let tracker = Mutex::new(Tracker::new(clock.now()));
                probe_on_schedule(
                    &schedule,
                    clock,
                    &tracker,
                    || {
                        starts.lock().unwrap().push(Instant::now() - start);
                        async {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            (Outcome::Pass, String::new())
                        }
                    },
                    |_, _| {},
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(2100)).await;
        task.abort();
        let starts: Vec<u128> = starts
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(
            starts,
            [123, 623, 1123, 1623],
            "a slow probe must not shift or bunch the schedule"
        );
    }

    #[test]
    fn the_checker_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<Checker>();
    }

    #[test]
    fn probes_are_spread_over_the_interval() {
        let interval = Duration::from_secs(2);
        let mut buckets = [0usize; 20];
        for i in 0..10_000u32 {
            let key = (
                format!("vip{}", i % 100),
                IpAddr::from([198, 18, (i / 250) as u8, (i % 250) as u8]),
            );
            let offset = spread(&key, interval);
            assert!(offset < interval);
            buckets[(offset.as_secs_f64() / interval.as_secs_f64() * 20.0) as usize] += 1;
        }
        let (least, most) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        // 500 per 100 ms bucket on average.
        assert!(
            *least > 400 && *most < 600,
            "probes per 100 ms: {buckets:?}"
        );
        let key = ("web".to_string(), IpAddr::from([198, 18, 0, 1]));
        assert_eq!(
            spread(&key, interval),
            spread(&key, interval),
            "a pair keeps its place"
        );
    }
}
