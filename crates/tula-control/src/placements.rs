//! Building the rings of VIP entries: each distinct Maglev placement once,
//! on every core, and shared by the VIPs whose backends it places.
//!
//! A Maglev ring depends only on the backends' keys (addresses) and weights;
//! the ids are just what its slots hold. So the ring is built once per distinct
//! list of (key, weight) with each slot holding a position in that list (a
//! placement), and each VIP's ring is the placement with its own ids put in.
//! VIPs that share a pool (ports 80 and 443 of one site, many sites on one farm)
//! then cost one build, not one each.

use std::collections::HashMap;

use tula_dataplane::{round_robin_ring, Scheduler};
use tula_maglev::{MaglevError, Ring, RingBackend, EMPTY_SLOT};

use crate::plan::VipEntry;

/// Rings built at once: enough to keep every core busy, few enough that their
/// slots (256 KiB each at the default size) stay a small part of the daemon's memory.
pub(crate) const RINGS_AT_ONCE: usize = 32;

/// Placements kept for reuse: 4 MiB at the default ring size.
const PLACEMENTS_KEPT: usize = 16;

/// What decides a placement: each ring member's key and weight, in the entry's (key) order.
type Members = Vec<(String, u32)>;

/// A ring whose slots hold positions in a [`Members`] list (or [`EMPTY_SLOT`]).
type Placement = Vec<u32>;

/// Rings for VIP entries, with the placements built recently kept for reuse.
pub(crate) struct Placements {
    ring_size: u32,
    kept: HashMap<Members, Placement>,
}

impl Placements {
    pub(crate) fn new(ring_size: u32) -> Placements {
        Placements {
            ring_size,
            kept: HashMap::new(),
        }
    }

    /// The rings of `entries`, in their order: Maglev for the hashing schedulers
    /// (each placement not kept is built, on every core), the interleaved turns of
    /// `round_robin_ring` for the round robins.
    pub(crate) fn rings(&mut self, entries: &[&VipEntry]) -> Vec<Result<Vec<u32>, MaglevError>> {
        let members: Vec<Option<Members>> = entries.iter().map(|e| maglev_members(e)).collect();
        let mut missing: Vec<&Members> = Vec::new();
        for m in members.iter().flatten() {
            if !self.kept.contains_key(m) && !missing.contains(&m) {
                missing.push(m);
            }
        }
        let ring_size = self.ring_size;
        let built: HashMap<&Members, Result<Placement, MaglevError>> = missing
            .iter()
            .copied()
            .zip(on_every_core(&missing, |m| build_placement(m, ring_size)))
            .collect();
        let kept = &self.kept;
        let pairs: Vec<_> = entries.iter().zip(&members).collect();
        let rings = on_every_core(&pairs, |(entry, m)| match m {
            None => Ok(round_robin_ring(&entry.ring, ring_size)),
            Some(m) => match kept
                .get(m)
                .map(Ok)
                .or_else(|| built.get(m).map(Result::as_ref))
            {
                Some(Ok(placement)) => Ok(with_ids(placement, &entry.ring)),
                Some(Err(error)) => Err(error.clone()),
                None => unreachable!("every placement is kept or built"),
            },
        });
        // Make room for this batch's placements, as many as fit.
        if self.kept.len() + built.len() > PLACEMENTS_KEPT {
            self.kept.clear();
        }
        let fit = built
            .into_iter()
            .filter_map(|(m, p)| Some((m.clone(), p.ok()?)));
        self.kept.extend(fit.take(PLACEMENTS_KEPT));
        rings
    }
}

/// The list a Maglev entry's placement depends on; `None` for the round robins.
fn maglev_members(entry: &VipEntry) -> Option<Members> {
    match entry.spec.scheduler {
        Scheduler::Maglev | Scheduler::SourceHash => Some(
            entry
                .ring
                .iter()
                .map(|b| (b.key.clone(), b.weight))
                .collect(),
        ),
        Scheduler::RoundRobin | Scheduler::WeightedRoundRobin => None,
    }
}

/// The Maglev ring of `members` with each member's position as its id.
fn build_placement(members: &Members, ring_size: u32) -> Result<Vec<u32>, MaglevError> {
    let positioned: Vec<RingBackend> = members
        .iter()
        .enumerate()
        .map(|(position, (key, weight))| RingBackend {
            id: position as u32,
            key: key.clone(),
            weight: *weight,
        })
        .collect();
    Ring::build(&positioned, ring_size).map(Ring::into_slots)
}

/// `placement` with each position replaced by the id of the backend there.
fn with_ids(placement: &[u32], ring: &[RingBackend]) -> Vec<u32> {
    let ids: Vec<u32> = ring.iter().map(|b| b.id).collect();
    // EMPTY_SLOT is no position, so it stays EMPTY_SLOT.
    placement
        .iter()
        .map(|&p| ids.get(p as usize).copied().unwrap_or(EMPTY_SLOT))
        .collect()
}

/// `work` applied to each item, in their order, on every core.
fn on_every_core<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores == 1 || items.len() <= 1 {
        return items.iter().map(work).collect();
    }
    let per_thread = items.len().div_ceil(cores);
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(work).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("building a ring does not panic"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tula_dataplane::{Dsr, VipSpec};

    /// A VIP entry of `scheduler` whose backend `k` is 198.18.65.(first + k) with id `base + k`.
    fn entry(scheduler: Scheduler, first: u32, weights: &[u32], base: u32) -> VipEntry {
        let mut ring: Vec<RingBackend> = weights
            .iter()
            .enumerate()
            .map(|(k, &weight)| RingBackend {
                id: base + k as u32,
                key: format!("198.18.65.{}", first + k as u32),
                weight,
            })
            .collect();
        ring.sort_by(|a, b| a.key.cmp(&b.key));
        VipEntry {
            name: format!("vip{base}"),
            spec: VipSpec {
                id: 0,
                dsr: Dsr::L3Ipip,
                scheduler,
                icmp_echo: true,
            },
            ring,
        }
    }

    /// Each entry's ring built alone, the way a placement must reproduce it.
    fn alone(entry: &VipEntry, size: u32) -> Result<Vec<u32>, MaglevError> {
        match maglev_members(entry) {
            Some(_) => Ring::build(&entry.ring, size).map(Ring::into_slots),
            None => Ok(round_robin_ring(&entry.ring, size)),
        }
    }

    #[test]
    fn shared_placements_give_each_vip_the_ring_built_alone() {
        let size = 1009;
        let same = [1, 1, 1, 1, 1, 1, 1, 1];
        let entries = vec![
            entry(Scheduler::Maglev, 2, &same, 0),
            // The same pool with other ids: shares the placement.
            entry(Scheduler::Maglev, 2, &same, 100),
            entry(Scheduler::SourceHash, 2, &same, 200),
            // The same addresses with other weights, or other addresses: placements of their own.
            entry(Scheduler::Maglev, 2, &[1, 2, 3, 1, 0, 1, 1, 4], 300),
            entry(Scheduler::Maglev, 3, &same, 400),
            entry(
                Scheduler::WeightedRoundRobin,
                2,
                &[1, 2, 3, 1, 0, 1, 1, 4],
                500,
            ),
            // Too many backends for the ring: only this one fails.
            entry(Scheduler::Maglev, 10, &[1; 1010], 600),
        ];
        let refs: Vec<&VipEntry> = entries.iter().collect();
        let mut placements = Placements::new(size);
        let rings = placements.rings(&refs);
        assert_eq!(placements.kept.len(), 3, "one placement per distinct pool");
        for (entry, ring) in entries.iter().zip(&rings) {
            assert_eq!(*ring, alone(entry, size), "{}", entry.name);
        }
        assert!(rings[6].is_err());
        // Kept placements serve a later batch too.
        let again = placements.rings(&refs[1..2]);
        assert_eq!(again[0], alone(&entries[1], size));
    }

    #[test]
    fn more_pools_than_are_kept_still_give_every_ring() {
        let size = 211;
        let entries: Vec<VipEntry> = (0..PLACEMENTS_KEPT as u32 + 5)
            .map(|v| entry(Scheduler::Maglev, 2 + v, &[1, 1, 2], 10 * v))
            .collect();
        let refs: Vec<&VipEntry> = entries.iter().collect();
        let mut placements = Placements::new(size);
        for (entry, ring) in entries.iter().zip(placements.rings(&refs)) {
            assert_eq!(ring, alone(entry, size), "{}", entry.name);
        }
        assert!(
            placements.kept.len() <= PLACEMENTS_KEPT,
            "the kept placements stay bounded"
        );
    }
}
