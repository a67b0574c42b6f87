//! Programming the data plane: running [`Op`]s, and reading back what a
//! (possibly adopted) data plane holds so it can be reconciled to a plan.

use tracing::debug;
use tula_dataplane::{round_robin_ring, Dataplane, DataplaneError, Scheduler};
use tula_maglev::Ring;

use crate::plan::{DataplaneState, Op, VipEntry};

/// Runs `ops` in order; stops at the first failure and says which one.
pub(crate) fn run(dataplane: &mut Dataplane, ops: &[Op]) -> Result<(), String> {
    // One backend address often serves many VIPs: resolve its next hop once per run.
    let mut resolved = std::collections::HashSet::new();
    for op in ops {
        run_one(dataplane, op, &mut resolved).map_err(|e| format!("{op}: {e}"))?;
        debug!(%op, "programmed");
    }
    Ok(())
}

fn run_one(
    dataplane: &mut Dataplane,
    op: &Op,
    resolved: &mut std::collections::HashSet<std::net::Ipv4Addr>,
) -> Result<(), String> {
    let text = |e: DataplaneError| e.to_string();
    match op {
        Op::Attach(ifname) => {
            let mode = dataplane.attach(ifname).map_err(text)?;
            tracing::info!(ifname, ?mode, "attached the balancer");
            // Generic mode transmits through the stack, so only native XDP_TX can vanish.
            if mode == tula_dataplane::AttachMode::Native {
                if let Some(warning) = tula_doctor::veth_black_hole(ifname) {
                    tracing::warn!(ifname, "{warning}");
                }
            }
        }
        Op::SetInterface(ifname, spec) => dataplane.set_interface(ifname, spec).map_err(text)?,
        Op::Detach(ifname) => {
            dataplane.detach(ifname).map_err(text)?;
            dataplane.remove_interface(ifname).map_err(text)?;
        }
        Op::SetBackend(id, backend) => {
            dataplane.set_backend(*id, backend).map_err(text)?;
            // The XDP path's FIB lookup needs the next hop's MAC from the first packet on.
            if backend.alive && resolved.insert(backend.addr) {
                if let Err(e) = tula_net::keep_route_resolved(backend.addr) {
                    tracing::warn!(backend = %backend.addr, error = %e, "cannot keep the next hop to this backend resolved");
                }
            }
        }
        Op::RemoveBackend(id) => dataplane.remove_backend(*id).map_err(text)?,
        Op::SetVip(key, entry) => {
            let ring = build_ring(entry, dataplane.ring_size())?;
            dataplane.set_vip(key, &entry.spec, &ring).map_err(text)?;
        }
        Op::RemoveVip(key, _) => dataplane.remove_vip(key).map_err(text)?,
        Op::SetIcmp(icmp) => dataplane.set_icmp(icmp).map_err(text)?,
    }
    Ok(())
}

/// The ring for a VIP entry, `ring_size` slots: Maglev for the hashing
/// schedulers, the interleaved turns of `round_robin_ring` for the round robins.
pub(crate) fn build_ring(entry: &VipEntry, ring_size: u32) -> Result<Vec<u32>, String> {
    match entry.spec.scheduler {
        Scheduler::Maglev | Scheduler::SourceHash => Ring::build(&entry.ring, ring_size)
            .map(|ring| ring.slots().to_vec())
            .map_err(|e| format!("building the Maglev ring: {e}")),
        Scheduler::RoundRobin | Scheduler::WeightedRoundRobin => {
            Ok(round_robin_ring(&entry.ring, ring_size))
        }
    }
}

/// What `dataplane` holds, in terms of `wanted`: a VIP whose spec or ring
/// differs from the wanted one is left out (so it is set again), and
/// interface specs are unknown (so they are set again).
pub(crate) fn read_state(
    dataplane: &Dataplane,
    wanted: &DataplaneState,
) -> Result<DataplaneState, String> {
    let text = |e: DataplaneError| e.to_string();
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
                let expected = build_ring(entry, dataplane.ring_size())?;
                if held.as_ref() == Some(&expected) {
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
                state.vips.insert(key, entry);
            }
        }
    }
    Ok(state)
}
