//! Programming the data plane: running [`Op`]s, and reading back what a
//! (possibly adopted) data plane holds so it can be reconciled to a plan.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tracing::debug;
use tula_dataplane::{Backend, Dataplane, DataplaneError};
use tula_maglev::MaglevError;

use crate::placements::{Placements, RINGS_AT_ONCE};
use crate::plan::{DataplaneState, Op, VipEntry};

/// A data-plane operation that failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("{op}: {source}")]
    Op {
        /// The operation, as `tula` logs it ("setting VIP web (...)").
        op: String,
        #[source]
        source: DataplaneError,
    },
    #[error("{op}: building the Maglev ring: {source}")]
    Ring {
        op: String,
        #[source]
        source: MaglevError,
    },
    #[error("reading back what the data plane holds: {source}")]
    ReadBack {
        #[source]
        source: DataplaneError,
    },
    #[error("{first}; rolling back failed too ({rollback}): the next change reconciles the data plane from what it holds")]
    RollbackFailed {
        first: Box<ProgramError>,
        rollback: Box<ProgramError>,
    },
    /// Injected by a test's fake data plane.
    #[error("{op}: {message}")]
    Injected { op: String, message: String },
}

/// The seam between the control logic and the data plane: run operations,
/// read back what is held. The kernel's [`Dataplane`] is one; tests use a
/// recording fake, so apply, coalescing, rollback, retention and conflicts
/// are checked without a kernel.
pub(crate) trait Programmer: Send {
    /// Runs `ops` in order; stops at the first failure and says which one.
    fn run(&mut self, ops: &[Op]) -> Result<(), ProgramError>;
    /// What is held, in terms of `wanted` (see [`read_state`]).
    fn read_state(&self, wanted: &DataplaneState) -> Result<DataplaneState, ProgramError>;
    fn ring_size(&self) -> u32;
    fn max_vips(&self) -> u32;
    fn max_backends(&self) -> u32;
    fn max_backend_addresses(&self) -> u32;
    /// Distinct addresses of the backends held now: the next hops in use.
    fn backend_addresses(&self) -> usize;
    /// Whether a backend held now has address `addr`.
    fn holds_backend_address(&self, addr: IpAddr) -> bool;
    fn attached(&self) -> Vec<String>;
    /// A handle for readers (status, counters), if this is a kernel data plane.
    fn reader(&self) -> Option<Arc<Dataplane>>;
    /// Removes every program, link and map.
    fn teardown(self: Box<Self>) -> Result<(), DataplaneError>;
}

/// The kernel's data plane, with the next hops it has kept resolved.
pub(crate) struct Kernel {
    pub dataplane: Dataplane,
    reader: Option<Arc<Dataplane>>,
    /// Backend addresses whose route was looked up, and the neighbours
    /// (gateway or on-link backend, by interface) kept resolved: each
    /// distinct one is asked of the kernel once.
    routed: HashSet<Ipv4Addr>,
    neighbours: HashSet<(String, Ipv4Addr)>,
}

impl Kernel {
    /// `dataplane`, pinned at `pin_dir`.
    pub(crate) fn new(dataplane: Dataplane, pin_dir: &std::path::Path) -> Kernel {
        // A second handle on the pinned maps lets readers work while the writer programs.
        let reader = match Dataplane::open_pinned(pin_dir) {
            Ok(reader) => Some(Arc::new(reader)),
            Err(e) => {
                tracing::warn!(pin_dir = %pin_dir.display(), error = %e, "cannot open a read handle on the data plane: status shows no traffic");
                None
            }
        };
        Kernel {
            dataplane,
            reader,
            routed: HashSet::new(),
            neighbours: HashSet::new(),
        }
    }

    fn run_one(&mut self, op: &Op) -> Result<(), DataplaneError> {
        let dataplane = &mut self.dataplane;
        match op {
            Op::Attach(ifname) => {
                let mode = dataplane.attach(ifname)?;
                tracing::info!(ifname, ?mode, "attached the balancer");
                // Generic mode transmits through the stack, so only native XDP_TX can vanish.
                if mode == tula_dataplane::AttachMode::Native {
                    if let Some(warning) = tula_doctor::veth_black_hole(ifname) {
                        tracing::warn!(ifname, "{warning}");
                    }
                }
            }
            Op::SetInterface(ifname, spec) => dataplane.set_interface(ifname, spec)?,
            Op::Detach(ifname) => {
                dataplane.detach(ifname)?;
                dataplane.remove_interface(ifname)?;
            }
            Op::SetBackend(..) => unreachable!("backends are set in runs"),
            Op::RemoveBackend(id) => dataplane.remove_backend(*id)?,
            Op::SetVip(..) => unreachable!("rings are built by the caller"),
            Op::RemoveVip(key, _) => dataplane.remove_vip(key)?,
            Op::SetIcmp(icmp) => dataplane.set_icmp(icmp)?,
        }
        Ok(())
    }

    /// A run of backend writes (a first apply has 100,000, an edit often
    /// one): one write of their entries, not one each.
    fn set_backends(&mut self, ops: &[Op]) -> Result<(), ProgramError> {
        let backends: Vec<(u32, Backend)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::SetBackend(id, backend) => Some((*id, *backend)),
                _ => None,
            })
            .collect();
        self.dataplane
            .set_backends(&backends)
            .map_err(|source| ProgramError::Op {
                op: match ops.len() {
                    1 => ops[0].to_string(),
                    n => format!("{} (and {} more backends)", ops[0], n - 1),
                },
                source,
            })?;
        for (op, (_, backend)) in ops.iter().zip(&backends) {
            self.resolve_next_hop(backend);
            debug!(%op, "programmed");
        }
        Ok(())
    }

    /// The XDP path's FIB lookup needs the next hop's MAC from a backend's first packet on.
    fn resolve_next_hop(&mut self, backend: &Backend) {
        if let (true, IpAddr::V4(addr)) = (backend.alive, backend.addr) {
            if self.routed.insert(addr) {
                self.keep_resolved(addr);
            }
        }
    }

    /// Keeps the next hop toward `backend` resolved: one route lookup per
    /// backend address, one neighbour entry per distinct gateway.
    fn keep_resolved(&mut self, backend: Ipv4Addr) {
        let route = match tula_net::route_get(backend) {
            Ok(route) => route,
            Err(e) => {
                tracing::warn!(%backend, error = %e, "cannot keep the next hop to this backend resolved");
                return;
            }
        };
        let neighbour = route.gateway.unwrap_or(backend);
        if self.neighbours.insert((route.dev.clone(), neighbour)) {
            if let Err(e) = tula_net::keep_neighbour_resolved(&route.dev, neighbour) {
                tracing::warn!(%backend, %neighbour, error = %e, "cannot keep the next hop to this backend resolved");
            }
        }
    }
}

impl Programmer for Kernel {
    fn run(&mut self, ops: &[Op]) -> Result<(), ProgramError> {
        let mut placements = Placements::new(self.dataplane.ring_size());
        let mut rest = ops;
        while let Some(op) = rest.first() {
            let backends = rest
                .iter()
                .take_while(|op| matches!(op, Op::SetBackend(..)))
                .count();
            if backends > 0 {
                let (set_backends, after) = rest.split_at(backends);
                self.set_backends(set_backends)?;
                rest = after;
                continue;
            }
            // A run of VIPs to set: rings built on every core, one placement a pool, written in order.
            let vips = rest
                .iter()
                .take_while(|op| matches!(op, Op::SetVip(..)))
                .count();
            if vips == 0 {
                self.run_one(op).map_err(|source| ProgramError::Op {
                    op: op.to_string(),
                    source,
                })?;
                debug!(%op, "programmed");
                rest = &rest[1..];
                continue;
            }
            let (set_vips, after) = rest.split_at(vips);
            for chunk in set_vips.chunks(RINGS_AT_ONCE) {
                let vips: Vec<_> = chunk
                    .iter()
                    .filter_map(|op| match op {
                        Op::SetVip(key, entry) => Some((op, key, entry.as_ref())),
                        _ => None,
                    })
                    .collect();
                let entries: Vec<&VipEntry> = vips.iter().map(|&(_, _, entry)| entry).collect();
                let rings = placements.rings(&entries);
                for ((op, key, entry), ring) in vips.into_iter().zip(rings) {
                    let ring = ring.map_err(|source| ProgramError::Ring {
                        op: op.to_string(),
                        source,
                    })?;
                    self.dataplane
                        .set_vip(key, &entry.spec, &ring)
                        .map_err(|source| ProgramError::Op {
                            op: op.to_string(),
                            source,
                        })?;
                    debug!(%op, "programmed");
                }
            }
            rest = after;
        }
        Ok(())
    }

    fn read_state(&self, wanted: &DataplaneState) -> Result<DataplaneState, ProgramError> {
        read_state(&self.dataplane, wanted)
    }

    fn ring_size(&self) -> u32 {
        self.dataplane.ring_size()
    }

    fn max_vips(&self) -> u32 {
        self.dataplane.max_vips()
    }

    fn max_backends(&self) -> u32 {
        self.dataplane.max_backends()
    }

    fn max_backend_addresses(&self) -> u32 {
        self.dataplane.max_backend_addresses()
    }

    fn backend_addresses(&self) -> usize {
        self.dataplane.backend_addresses()
    }

    fn holds_backend_address(&self, addr: IpAddr) -> bool {
        self.dataplane.holds_backend_address(addr)
    }

    fn attached(&self) -> Vec<String> {
        self.dataplane.attached()
    }

    fn reader(&self) -> Option<Arc<Dataplane>> {
        self.reader.clone()
    }

    fn teardown(self: Box<Self>) -> Result<(), DataplaneError> {
        let Kernel {
            dataplane, reader, ..
        } = *self;
        drop(reader);
        dataplane.teardown()
    }
}

/// What `dataplane` holds, in terms of `wanted`: a VIP whose spec or ring
/// differs from the wanted one is left out (so it is set again), and
/// interface specs are unknown (so they are set again).
pub(crate) fn read_state(
    dataplane: &Dataplane,
    wanted: &DataplaneState,
) -> Result<DataplaneState, ProgramError> {
    let text = |source: DataplaneError| ProgramError::ReadBack { source };
    let mut placements = Placements::new(dataplane.ring_size());
    let mut state = DataplaneState {
        icmp: Some(dataplane.icmp().map_err(text)?),
        ..DataplaneState::default()
    };
    for ifname in dataplane.attached() {
        state.interfaces.insert(ifname, None);
    }
    for id in 0..dataplane.max_backends() {
        if let Some(backend) = dataplane.backend(id).map_err(text)? {
            state.backends.insert(id, backend);
        }
    }
    for (key, spec) in dataplane.vips().map_err(text)? {
        match wanted.vips.get(&key) {
            Some(entry) if entry.spec == spec => {
                let held = dataplane
                    .vip_ring(&key)
                    .map_err(text)?
                    .map(|(_, slots)| slots);
                // A ring that cannot be built is not held: it is set again (and fails there).
                let expected = placements
                    .rings(&[entry.as_ref()])
                    .pop()
                    .and_then(Result::ok);
                if held.is_some() && held == expected {
                    state.vips.insert(key, entry.clone());
                }
            }
            Some(_) => {}
            None => {
                let entry = VipEntry {
                    name: format!("(not in the config, id {})", spec.id),
                    spec,
                    ring: Vec::new(),
                };
                state.vips.insert(key, Arc::new(entry));
            }
        }
    }
    Ok(state)
}
