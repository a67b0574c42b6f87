//! [`Node`]: whether this node is in service, and the thread that keeps the
//! announced routes (one host route per VIP address, /32 or /128, out of the
//! TUN device, in the announcement table) equal to what [`decide`] says, every `interval`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tracing::{info, warn};

use crate::decide::{decide, Announcement, Readiness};
use crate::hold::{self, Holder};
use crate::BgpError;

/// How the daemon announces.
#[derive(Debug, Clone)]
pub struct AnnounceOptions {
    /// Announce at all; off, the node still keeps its drained state.
    pub enabled: bool,
    /// The routing table BIRD's kernel protocol learns from.
    pub table: u32,
    /// The TUN device the routes point out of.
    pub device: String,
    /// How long announcements outlive the daemon (the pinned data plane forwards meanwhile).
    pub grace: Duration,
    /// How often what the node can serve is checked.
    pub interval: Duration,
    /// Before an unload, how long to wait after withdrawing for the routers
    /// to move traffic away.
    pub settle: Duration,
    /// Where the drained mark and the holder's pid are kept; without one,
    /// draining lasts until the daemon stops (and BGP must be off).
    pub state_dir: Option<PathBuf>,
    /// The data plane's pin directory: once it is gone, the holder lets go at once.
    pub pin_dir: PathBuf,
    /// The `tula` executable, run as the holder.
    pub tula_bin: PathBuf,
}

impl Default for AnnounceOptions {
    /// BGP off, nothing kept on disk.
    fn default() -> AnnounceOptions {
        AnnounceOptions {
            enabled: false,
            table: crate::DEFAULT_TABLE,
            device: crate::DEFAULT_DEVICE.into(),
            grace: Duration::from_secs(10),
            interval: Duration::from_millis(200),
            settle: Duration::from_secs(2),
            state_dir: None,
            pin_dir: PathBuf::new(),
            tula_bin: PathBuf::new(),
        }
    }
}

/// What `GET /api/node` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// False once drained, until resumed.
    pub in_service: bool,
    /// Whether this daemon announces VIPs (`tula serve --bgp`).
    pub bgp: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The addresses in the announcement table now.
    pub announced: Vec<IpAddr>,
    /// Each VIP's announcement state.
    pub vips: Vec<Announcement>,
    /// Packets the VIPs have received, all together (drain waits for it to stop growing).
    pub vip_packets: u64,
}

/// The node's service state and, with BGP on, its announcer.
pub struct Node {
    shared: Arc<Shared>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

type ReadinessFn = dyn Fn() -> Readiness + Send + Sync;

struct Shared {
    options: AnnounceOptions,
    readiness: Box<ReadinessFn>,
    in_service: AtomicBool,
    stopping: AtomicBool,
    /// Announced addresses and the last decision; one reconcile at a time.
    state: Mutex<State>,
    wake: Condvar,
    tun: Option<OwnedFd>,
    holder: Mutex<Option<Holder>>,
}

#[derive(Default)]
struct State {
    announced: BTreeSet<IpAddr>,
    vips: Vec<Announcement>,
    /// The last failure to change the table, logged once.
    failing: Option<String>,
}

const DRAINED_MARK: &str = "node-drained";

/// The prefix length of a host route to `address`: 32 or 128.
fn host_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

impl Node {
    /// Starts the node: drained if it was when the last daemon stopped; with
    /// BGP on, takes over the TUN device (and the routes a previous daemon's
    /// holder keeps), starts a holder and the announcing thread.
    pub fn start(options: AnnounceOptions, readiness: Box<ReadinessFn>) -> Result<Node, BgpError> {
        let in_service = !options.state_dir.as_ref().is_some_and(|dir| dir.join(DRAINED_MARK).exists());
        let (tun, holder, announced) = if options.enabled {
            let state_dir = options
                .state_dir
                .as_ref()
                .ok_or_else(|| BgpError::Invalid("announcing by BGP needs a state directory for its holder".into()))?;
            let tun = crate::tun::open(&options.device)?;
            tula_net::set_up(&options.device)?;
            let pid_file = state_dir.join(hold::PID_FILE);
            hold::stop_previous(&pid_file);
            let holder = hold::spawn(&options.tula_bin, &tun, options.grace, &options.pin_dir, &pid_file)?;
            let kept: BTreeSet<IpAddr> = tula_net::table_routes(options.table, &options.device)?
                .into_iter()
                .filter(|(address, prefix)| *prefix == host_prefix(*address))
                .map(|(address, _)| address)
                .collect();
            info!(device = %options.device, table = options.table, grace = ?options.grace, kept = ?kept, in_service, "announcing VIPs through the routing table BIRD learns from");
            (Some(tun), Some(holder), kept)
        } else {
            (None, None, BTreeSet::new())
        };
        let shared = Arc::new(Shared {
            options,
            readiness,
            in_service: AtomicBool::new(in_service),
            stopping: AtomicBool::new(false),
            state: Mutex::new(State { announced, ..State::default() }),
            wake: Condvar::new(),
            tun,
            holder: Mutex::new(holder),
        });
        let worker = if shared.options.enabled {
            shared.reconcile();
            let shared = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("bgp-announcer".into())
                    .spawn(move || shared.run())
                    .map_err(|e| BgpError::io("starting the announcer thread", e))?,
            )
        } else {
            None
        };
        Ok(Node { shared, worker: Mutex::new(worker) })
    }

    /// Takes the node out of service: every VIP is withdrawn now (returns
    /// once the routes are gone); forwarding goes on for what still arrives.
    /// Kept across restarts.
    pub fn drain(&self) -> Result<NodeStatus, BgpError> {
        if let Some(dir) = &self.shared.options.state_dir {
            let mark = dir.join(DRAINED_MARK);
            std::fs::write(&mark, "drained by tula node drain\n").map_err(|e| BgpError::io(format!("writing {}", mark.display()), e))?;
        }
        if self.shared.in_service.swap(false, Ordering::SeqCst) {
            info!("node drained: withdrawing every VIP");
        }
        self.shared.reconcile();
        Ok(self.status())
    }

    /// Puts the node back in service: VIPs it can serve are announced again.
    pub fn resume(&self) -> Result<NodeStatus, BgpError> {
        if let Some(dir) = &self.shared.options.state_dir {
            let mark = dir.join(DRAINED_MARK);
            match std::fs::remove_file(&mark) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BgpError::io(format!("removing {}", mark.display()), e)),
            }
        }
        if !self.shared.in_service.swap(true, Ordering::SeqCst) {
            info!("node resumed: announcing the VIPs it can serve");
        }
        self.shared.reconcile();
        Ok(self.status())
    }

    /// In service or not, and each VIP's announcement (vip_packets left 0).
    pub fn status(&self) -> NodeStatus {
        let shared = &self.shared;
        let state = shared.lock();
        let vips = if shared.options.enabled {
            state.vips.clone()
        } else {
            let (_, mut vips) = decide(&(shared.readiness)(), shared.in_service.load(Ordering::SeqCst));
            for vip in &mut vips {
                vip.announced = false;
                vip.reason = Some("BGP is off (tula serve --bgp)".into());
            }
            vips
        };
        NodeStatus {
            in_service: shared.in_service.load(Ordering::SeqCst),
            bgp: shared.options.enabled,
            table: shared.options.enabled.then_some(shared.options.table),
            device: shared.options.enabled.then(|| shared.options.device.clone()),
            announced: state.announced.iter().copied().collect(),
            vips,
            vip_packets: 0,
        }
    }

    /// Before an unload: stops announcing, withdraws every route, waits
    /// `settle` (an option) for the routers to move traffic away, and ends the holder.
    pub fn withdraw_all(&self) {
        let settle = self.shared.options.settle;
        self.stop_worker();
        let shared = &self.shared;
        let mut state = shared.lock();
        let had = !state.announced.is_empty();
        for address in std::mem::take(&mut state.announced) {
            if let Err(e) = tula_net::del_table_route(address, host_prefix(address), &shared.options.device, shared.options.table) {
                warn!(%address, error = %e, "withdrawing a VIP failed");
            }
        }
        drop(state);
        if had {
            info!(settle = ?settle, "withdrew every VIP before unloading; waiting for the routers to move traffic away");
            std::thread::sleep(settle);
        }
        if let Some(holder) = shared.holder.lock().unwrap_or_else(PoisonError::into_inner).take() {
            holder.stop();
        }
    }

    /// Stops the announcing thread; the routes stay, held for the grace time.
    pub fn stop(&self) {
        self.stop_worker();
    }

    fn stop_worker(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(worker) = self.worker.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = worker.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let mut state = self.lock();
        while !self.stopping.load(Ordering::SeqCst) {
            state = self.wake.wait_timeout(state, self.options.interval).unwrap_or_else(PoisonError::into_inner).0;
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            drop(state);
            self.reconcile();
            state = self.lock();
        }
    }

    /// Makes the table hold exactly the addresses [`decide`] wants.
    fn reconcile(&self) {
        let readiness = (self.readiness)();
        let (wanted, vips) = decide(&readiness, self.in_service.load(Ordering::SeqCst));
        let mut state = self.lock();
        if self.tun.is_none() {
            state.vips = vips;
            return;
        }
        let wanted: BTreeSet<IpAddr> = wanted.into_iter().collect();
        let (table, device) = (self.options.table, &self.options.device);
        let mut failure = None;
        for address in state.announced.difference(&wanted).copied().collect::<Vec<_>>() {
            let reason = vips.iter().find(|v| v.address == address).and_then(|v| v.reason.clone());
            match tula_net::del_table_route(address, host_prefix(address), device, table) {
                Ok(_) => {
                    state.announced.remove(&address);
                    info!(%address, reason = reason.as_deref().unwrap_or("no VIP on it"), "withdrew VIP");
                }
                Err(e) => failure = Some(format!("withdrawing {address}: {e}")),
            }
        }
        for address in wanted.difference(&state.announced).copied().collect::<Vec<_>>() {
            match tula_net::add_table_route(address, host_prefix(address), device, table) {
                Ok(()) => {
                    state.announced.insert(address);
                    info!(%address, "announcing VIP");
                }
                Err(e) => failure = Some(format!("announcing {address}: {e}")),
            }
        }
        if failure != state.failing {
            if let Some(message) = &failure {
                warn!(error = %message, "changing the announcement table failed; retrying");
            }
            state.failing = failure;
        }
        state.vips = vips
            .into_iter()
            .map(|mut v| {
                if v.announced && !state.announced.contains(&v.address) {
                    v.announced = false;
                    v.reason = state.failing.clone();
                }
                v
            })
            .collect();
    }
}
