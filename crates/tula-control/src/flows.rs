//! Active flows: each backend's flows that sent a packet within the last
//! window (60 s unless the daemon is told otherwise), its connection-table
//! entries (which stay until the table needs their way, however quiet the
//! flow), and when its last flow was last seen. A sampler thread walks the
//! table every few seconds, outside any lock, and publishes a
//! [`FlowSample`] that every status read shares for free.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tula_dataplane::KernelClock;

use crate::snapshot::Snapshot;
use crate::ControlError;

/// How flows are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowOptions {
    /// A flow is active while its last packet is at most this old.
    pub window: Duration,
    /// Time between two walks of the connection table.
    pub every: Duration,
}

impl Default for FlowOptions {
    fn default() -> FlowOptions {
        FlowOptions {
            window: Duration::from_secs(60),
            every: Duration::from_secs(5),
        }
    }
}

/// One backend's flows in a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendFlows {
    /// Flows whose last packet came within the window.
    pub active: u64,
    /// Connection-table entries pointing at it.
    pub entries: u64,
    /// When a flow of it last sent a packet, as far as any sample saw.
    pub last_seen: Option<SystemTime>,
}

/// One walk of the connection table, by VIP name and backend address.
#[derive(Debug, Default)]
pub struct FlowSample {
    /// When the walk was made; `None` before the first (or with no data plane).
    pub taken_at: Option<SystemTime>,
    pub window: Duration,
    by_vip: HashMap<String, HashMap<IpAddr, BackendFlows>>,
}

impl FlowSample {
    /// Backend `address` of VIP `vip` (all zero when the sample has no flow of it).
    pub fn backend(&self, vip: &str, address: IpAddr) -> BackendFlows {
        self.by_vip
            .get(vip)
            .and_then(|backends| backends.get(&address))
            .copied()
            .unwrap_or_default()
    }
}

/// The latest sample and how to take the next one; shared by the sampler
/// and every snapshot.
#[derive(Default)]
pub(crate) struct FlowBoard {
    options: RwLock<FlowOptions>,
    latest: RwLock<Arc<FlowSample>>,
    /// One walk at a time (the sampler's, or one asked for by `Control::sample_flows`).
    walking: Mutex<()>,
}

/// The kernel's clock, calibrated once per process (it takes a second).
fn kernel_clock() -> Result<KernelClock, ControlError> {
    static CLOCK: OnceLock<Result<KernelClock, String>> = OnceLock::new();
    CLOCK
        .get_or_init(|| KernelClock::calibrate(Duration::from_secs(1)).map_err(|e| e.to_string()))
        .clone()
        .map_err(|message| ControlError::Flows(format!("the kernel's clock: {message}")))
}

impl FlowBoard {
    pub(crate) fn latest(&self) -> Arc<FlowSample> {
        self.latest
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn options(&self) -> FlowOptions {
        *self.options.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_options(&self, options: FlowOptions) {
        *self.options.write().unwrap_or_else(PoisonError::into_inner) = options;
    }

    /// Walks `snapshot`'s connection table and publishes what it holds.
    pub(crate) fn sample(&self, snapshot: &Snapshot) -> Result<(), ControlError> {
        let _walking = self.walking.lock().unwrap_or_else(PoisonError::into_inner);
        let window = self.options().window;
        let Some(reader) = snapshot.reader.as_deref() else {
            *self.latest.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(FlowSample {
                window,
                ..FlowSample::default()
            });
            return Ok(());
        };
        let clock = kernel_clock()?;
        let now = clock.now();
        let since = now.saturating_sub(clock.duration_to_jiffies(window));
        let tally = reader
            .conn_tally(since)
            .map_err(|e| ControlError::Flows(e.to_string()))?;
        let taken_at = SystemTime::now();
        let previous = self.latest();
        let mut by_vip: HashMap<String, HashMap<IpAddr, BackendFlows>> = HashMap::new();
        for vip in &snapshot.config().vips {
            let Some(vip_id) = snapshot.ids.vip(&vip.name) else {
                continue;
            };
            let mut backends = HashMap::new();
            for backend in &vip.backends {
                let seen_before = previous.backend(&vip.name, backend.address).last_seen;
                let counted = snapshot
                    .ids
                    .backend(&vip.name, &backend.address)
                    .and_then(|id| tally.get(&(vip_id, id)));
                let Some(counted) = counted else {
                    if seen_before.is_some() {
                        backends.insert(
                            backend.address,
                            BackendFlows {
                                last_seen: seen_before,
                                ..BackendFlows::default()
                            },
                        );
                    }
                    continue;
                };
                // Jiffy 0: a flow carried over from another build, no packet since.
                let seen_now = (counted.last_seen > 0)
                    .then(|| taken_at.checked_sub(clock.age(counted.last_seen)))
                    .flatten();
                backends.insert(
                    backend.address,
                    BackendFlows {
                        active: counted.active,
                        entries: counted.entries,
                        last_seen: seen_now.max(seen_before),
                    },
                );
            }
            if !backends.is_empty() {
                by_vip.insert(vip.name.clone(), backends);
            }
        }
        *self.latest.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(FlowSample {
            taken_at: Some(taken_at),
            window,
            by_vip,
        });
        Ok(())
    }
}

/// The thread that samples flows every [`FlowOptions::every`]; stopped when dropped.
pub struct FlowSampler {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl FlowSampler {
    pub(crate) fn start(
        board: Arc<FlowBoard>,
        snapshot: impl Fn() -> Arc<Snapshot> + Send + 'static,
    ) -> Result<FlowSampler, ControlError> {
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tula-flows".into())
            .spawn(move || {
                let mut complained = false;
                loop {
                    match board.sample(&snapshot()) {
                        Ok(()) => complained = false,
                        // Said once until it works again: the next walk may.
                        Err(e) if !complained => {
                            complained = true;
                            tracing::warn!(error = %e, "sampling active flows failed; status shows the last sample");
                        }
                        Err(_) => {}
                    }
                    let (lock, wake) = &*stopped;
                    let every = board.options().every;
                    let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    let (guard, _) = wake
                        .wait_timeout_while(guard, every, |stop| !*stop)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *guard {
                        return;
                    }
                }
            })
            .map_err(|source| ControlError::Io {
                what: "starting the flow sampler thread".into(),
                source,
            })?;
        Ok(FlowSampler {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FlowSampler {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
