//! Hops: which element of `paths` each backend address uses. Backends with
//! one address share its next hops, so 1,000 VIPs over the same 100 servers
//! keep 100 paths per CPU, not 100,000. A hop is numbered below the paths
//! each CPU has (max_backend_addresses) and has an epoch, which every
//! backend of the hop carries (see `struct backend` in maps.h).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::abi;

/// The address of a backend entry (`b6`: its `backends6` entry, read if it
/// is an IPv6 backend), or None for an id never set or removed.
pub(crate) fn backend_addr(raw: &abi::Backend, b6: Option<&abi::Backend6>) -> Option<IpAddr> {
    if raw.flags & abi::BACKEND_F_IPV6 != 0 {
        return b6.map(|b6| abi::addr6_from_raw(b6.addr).into());
    }
    (*raw != abi::Backend::default()).then(|| abi::addr_from_raw(raw.addr).into())
}

/// A hop: its element of `paths` (per CPU) and its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hop {
    pub(crate) index: u32,
    pub(crate) epoch: u16,
    /// Backend ids with this address.
    users: u32,
}

/// Every hop number below the limit is in use: a new address has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HopsFull {
    pub(crate) limit: u32,
}

/// The hops in use, by address, and each backend id's address.
#[derive(Debug)]
pub(crate) struct Hops {
    by_addr: HashMap<IpAddr, Hop>,
    /// By backend id, up to the highest id set: 17 bytes an id (a HashMap took 25 to 33).
    of_backend: Vec<Option<IpAddr>>,
    /// Numbers given back by hops whose last backend left.
    free: Vec<u32>,
    next: u32,
    /// Hops are numbered below it: the paths each CPU has.
    limit: u32,
}

impl Hops {
    /// No hops yet; numbers below `limit`.
    pub(crate) fn new(limit: u32) -> Hops {
        Hops {
            by_addr: HashMap::new(),
            of_backend: Vec::new(),
            free: Vec::new(),
            next: 0,
            limit,
        }
    }

    /// Gives each backend of `backends` (indexed by id) whose `addrs` entry is
    /// set its address's hop, numbered afresh below `limit`; each new hop
    /// takes its epoch from `epoch`.
    pub(crate) fn assign(
        backends: &mut [abi::Backend],
        addrs: &[Option<IpAddr>],
        limit: u32,
        mut epoch: impl FnMut() -> u16,
    ) -> Result<Hops, HopsFull> {
        let mut hops = Hops::new(limit);
        for (id, (backend, addr)) in backends.iter_mut().zip(addrs).enumerate() {
            if let Some(addr) = addr {
                let hop = hops.join(id as u32, *addr, &mut epoch)?;
                backend.hop = hop.index;
                backend.epoch = hop.epoch;
            }
        }
        Ok(hops)
    }

    /// The hops `backends` (indexed by id, addresses in `addrs`) already
    /// name, if they agree: one hop per address, one address per hop, every
    /// hop below `max`. Opening a pinned balancer reads them so, writing
    /// nothing (a second, read-only handle must not renumber the writer's).
    pub(crate) fn from_entries(
        backends: &[abi::Backend],
        addrs: &[Option<IpAddr>],
        max: u32,
    ) -> Option<Hops> {
        let mut hops = Hops::new(max);
        let mut owners: HashMap<u32, IpAddr> = HashMap::new();
        for (id, (backend, addr)) in backends.iter().zip(addrs).enumerate() {
            let Some(addr) = addr else {
                continue;
            };
            match hops.by_addr.get_mut(addr) {
                Some(hop) if hop.index == backend.hop && hop.epoch == backend.epoch => {
                    hop.users += 1
                }
                Some(_) => return None,
                None => {
                    if backend.hop >= max || owners.insert(backend.hop, *addr).is_some() {
                        return None;
                    }
                    let hop = Hop {
                        index: backend.hop,
                        epoch: backend.epoch,
                        users: 1,
                    };
                    hops.by_addr.insert(*addr, hop);
                }
            }
            hops.set_address(id as u32, Some(*addr));
        }
        hops.next = owners.keys().max().map_or(0, |highest| highest + 1);
        hops.free = (0..hops.next)
            .rev()
            .filter(|n| !owners.contains_key(n))
            .collect();
        Some(hops)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Distinct addresses with a hop: those of the backends set.
    pub(crate) fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub(crate) fn holds(&self, addr: IpAddr) -> bool {
        self.by_addr.contains_key(&addr)
    }

    /// The hop backend `id` uses once its address is `addr`: its current one
    /// if the address is unchanged, else (leaving its old hop) the address's,
    /// which is made, under a new epoch, if no other backend has the address.
    /// Changes nothing if that needs a number and none below the limit is free.
    pub(crate) fn join(
        &mut self,
        id: u32,
        addr: IpAddr,
        epoch: impl FnOnce() -> u16,
    ) -> Result<Hop, HopsFull> {
        let old = self.address(id);
        if old == Some(addr) {
            return Ok(self.by_addr[&addr]);
        }
        let frees_its_own = old.is_some_and(|old| self.by_addr[&old].users == 1);
        if !self.by_addr.contains_key(&addr)
            && self.free.is_empty()
            && self.next >= self.limit
            && !frees_its_own
        {
            return Err(HopsFull { limit: self.limit });
        }
        self.leave(id);
        self.set_address(id, Some(addr));
        if let Some(hop) = self.by_addr.get_mut(&addr) {
            hop.users += 1;
            return Ok(*hop);
        }
        let index = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        let hop = Hop {
            index,
            epoch: epoch(),
            users: 1,
        };
        self.by_addr.insert(addr, hop);
        Ok(hop)
    }

    /// Whether the backends of `batch` (id, new address) can all be joined,
    /// in order, as [`Hops::join`] joins them: a backend that moves gives
    /// its hop back first when it was its address's last user. The first
    /// that would find no free number is the error. Changes nothing, so a
    /// refused batch leaves nothing to undo.
    pub(crate) fn check_joins(
        &self,
        batch: impl IntoIterator<Item = (u32, IpAddr)>,
    ) -> Result<(), (u32, IpAddr)> {
        let mut free = (self.limit as usize).saturating_sub(self.by_addr.len());
        // What the batch has done so far: ids' new addresses, and users gained or lost.
        let mut moved: HashMap<u32, IpAddr> = HashMap::new();
        let mut gained: HashMap<IpAddr, i64> = HashMap::new();
        let users = |gained: &HashMap<IpAddr, i64>, addr: IpAddr| {
            self.by_addr
                .get(&addr)
                .map_or(0, |hop| i64::from(hop.users))
                + gained.get(&addr).copied().unwrap_or(0)
        };
        for (id, addr) in batch {
            let old = moved.get(&id).copied().or_else(|| self.address(id));
            if old == Some(addr) {
                continue;
            }
            if let Some(old) = old {
                *gained.entry(old).or_default() -= 1;
                if users(&gained, old) == 0 {
                    free += 1;
                }
            }
            if users(&gained, addr) == 0 {
                if free == 0 {
                    return Err((id, addr));
                }
                free -= 1;
            }
            *gained.entry(addr).or_default() += 1;
            moved.insert(id, addr);
        }
        Ok(())
    }

    /// Backend `id` has no address any more; its hop goes with its last backend.
    pub(crate) fn leave(&mut self, id: u32) {
        let Some(addr) = self.address(id) else {
            return;
        };
        self.set_address(id, None);
        let hop = self
            .by_addr
            .get_mut(&addr)
            .expect("every backend's address has a hop");
        hop.users -= 1;
        if hop.users == 0 {
            self.free.push(hop.index);
            self.by_addr.remove(&addr);
        }
    }

    fn address(&self, id: u32) -> Option<IpAddr> {
        self.of_backend.get(id as usize).copied().flatten()
    }

    fn set_address(&mut self, id: u32, addr: Option<IpAddr>) {
        let id = id as usize;
        if id >= self.of_backend.len() {
            self.of_backend.resize(id + 1, None);
        }
        self.of_backend[id] = addr;
    }

    /// Moves every hop to `epoch` (interfaces changed: every path is refilled).
    pub(crate) fn set_epoch(&mut self, epoch: u16) {
        for hop in self.by_addr.values_mut() {
            hop.epoch = epoch;
        }
    }
}

/// The next hops backends take, kept apart from any data plane: each backend
/// id's address against `max_backend_addresses`, by the rules of
/// [`Dataplane::set_backends`](crate::Dataplane::set_backends). For stand-ins
/// of the data plane (tula-control's test fake) that must refuse what the
/// data plane refuses.
#[derive(Debug)]
pub struct NextHops(Hops);

impl NextHops {
    /// No backends yet; at most `max_backend_addresses` distinct addresses.
    pub fn new(max_backend_addresses: u32) -> NextHops {
        NextHops(Hops::new(max_backend_addresses))
    }

    /// Backend `id` now has address `addr`, or, as the data plane refuses
    /// it, an error that changes nothing: the address is new and every next
    /// hop is taken (a backend that moves gives its own back first when it
    /// was its old address's last).
    pub fn set(&mut self, id: u32, addr: IpAddr) -> crate::Result<()> {
        match self.0.join(id, addr, || 0) {
            Ok(_) => Ok(()),
            Err(full) => Err(crate::DataplaneError::TooManyBackendAddresses {
                id,
                addr,
                max_backend_addresses: full.limit,
            }),
        }
    }

    /// Backend `id` is removed: its address's next hop goes with its last backend.
    pub fn remove(&mut self, id: u32) {
        self.0.leave(id)
    }

    /// Distinct addresses held (next hops in use).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a backend has address `addr` (so its next hop is in use).
    pub fn holds(&self, addr: IpAddr) -> bool {
        self.0.holds(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, last])
    }

    #[test]
    fn backends_with_one_address_share_its_hop_until_the_last_one_leaves() {
        let mut hops = Hops::new(16);
        let mut epochs = 0u16..;
        let mut epoch = || epochs.next().unwrap();
        let a = hops.join(1, addr(1), &mut epoch).unwrap();
        let b = hops.join(2, addr(2), &mut epoch).unwrap();
        assert_ne!(a.index, b.index);
        assert_ne!(a.epoch, b.epoch);
        assert_eq!(
            hops.join(3, addr(1), &mut epoch).unwrap(),
            Hop { users: 2, ..a }
        );
        // Joining again with the same address changes nothing.
        assert_eq!(hops.join(3, addr(1), &mut epoch).unwrap().users, 2);
        hops.leave(1);
        assert_eq!(
            hops.join(4, addr(1), &mut epoch).unwrap().index,
            a.index,
            "backend 3 still holds the hop"
        );
        hops.leave(3);
        hops.leave(4);
        // The number is given again, under a new epoch: its paths were filled for another address.
        let c = hops.join(5, addr(3), &mut epoch).unwrap();
        assert_eq!(c.index, a.index);
        assert!(c.epoch > b.epoch);
    }

    #[test]
    fn a_backend_that_changes_address_moves_to_the_new_addresss_hop() {
        let mut hops = Hops::new(16);
        let mut epochs = 0u16..;
        let mut epoch = || epochs.next().unwrap();
        let a = hops.join(1, addr(1), &mut epoch).unwrap();
        let b = hops.join(2, addr(2), &mut epoch).unwrap();
        assert_eq!(hops.join(1, addr(2), &mut epoch).unwrap().index, b.index);
        // Address 1 had no other backend: its number is free for the next address.
        assert_eq!(hops.join(3, addr(9), &mut epoch).unwrap().index, a.index);
    }

    #[test]
    fn hops_read_back_from_their_entries_go_on_where_they_were() {
        let mut hops = Hops::new(16);
        let mut epochs = 0u16..;
        let mut epoch = || epochs.next().unwrap();
        let mut backends = vec![abi::Backend::default(); 4];
        let mut addrs = vec![None; 4];
        for (id, last) in [(1, 1), (2, 2), (3, 1)] {
            let hop = hops.join(id, addr(last), &mut epoch).unwrap();
            (backends[id as usize].hop, backends[id as usize].epoch) = (hop.index, hop.epoch);
            addrs[id as usize] = Some(addr(last));
        }
        let mut read = Hops::from_entries(&backends, &addrs, 4).expect("consistent");
        assert_eq!(
            read.join(0, addr(2), || 99).unwrap(),
            hops.join(0, addr(2), || 99).unwrap()
        );
        // A third address takes the next number, as it would have.
        assert_eq!(read.join(3, addr(5), || 7).unwrap().index, 2);
        // One address on two hops, or a hop out of range, is not consistent.
        backends[3].hop = 1;
        assert!(Hops::from_entries(&backends, &addrs, 4).is_none());
        backends[3] = backends[1];
        assert!(Hops::from_entries(&backends, &addrs, 1).is_none());
    }

    #[test]
    fn assign_numbers_the_hops_of_written_backends_afresh() {
        let mut backends = vec![
            abi::Backend {
                hop: 77,
                ..Default::default()
            };
            4
        ];
        let addrs = [Some(addr(1)), None, Some(addr(2)), Some(addr(1))];
        let mut next = 10;
        let hops = Hops::assign(&mut backends, &addrs, 4, || {
            next += 1;
            next
        })
        .unwrap();
        let hop_of = |b: &abi::Backend| (b.hop, b.epoch);
        assert_eq!(hop_of(&backends[0]), (0, 11));
        assert_eq!(hop_of(&backends[2]), (1, 12));
        assert_eq!(hop_of(&backends[3]), (0, 11));
        assert_eq!(backends[1].hop, 77, "an unset id is left alone");
        assert!(!hops.is_empty());
    }

    #[test]
    fn a_new_address_beyond_the_limit_is_refused_and_changes_nothing() {
        let mut hops = Hops::new(2);
        let mut epochs = 0u16..;
        let mut epoch = || epochs.next().unwrap();
        let a = hops.join(1, addr(1), &mut epoch).unwrap();
        hops.join(2, addr(2), &mut epoch).unwrap();
        assert_eq!(
            hops.join(3, addr(3), &mut epoch),
            Err(HopsFull { limit: 2 })
        );
        assert_eq!(hops.address(3), None, "the refused backend has no address");
        // An address in use needs no number of its own.
        assert_eq!(hops.join(3, addr(1), &mut epoch).unwrap().index, a.index);
        // Backend 2 moves to a new address: the number it gives back is the one it takes.
        assert!(hops.join(2, addr(4), &mut epoch).is_ok());
        // Backend 3 would leave a hop that backend 1 still holds.
        assert_eq!(
            hops.join(3, addr(5), &mut epoch),
            Err(HopsFull { limit: 2 })
        );
        assert_eq!(
            hops.address(3),
            Some(addr(1)),
            "the refused backend keeps its address"
        );
        let mut backends = vec![abi::Backend::default(); 3];
        let addrs = [Some(addr(1)), Some(addr(2)), Some(addr(3))];
        assert!(Hops::assign(&mut backends, &addrs, 2, || 0).is_err());
    }

    #[test]
    fn next_hops_refuse_a_new_address_as_the_data_plane_does() {
        let mut next_hops = NextHops::new(2);
        next_hops.set(1, addr(1)).unwrap();
        next_hops.set(2, addr(2)).unwrap();
        match next_hops.set(3, addr(3)) {
            Err(crate::DataplaneError::TooManyBackendAddresses {
                id: 3,
                addr: refused,
                max_backend_addresses: 2,
            }) => assert_eq!(refused, addr(3)),
            other => panic!("expected backend 3 refused, got {other:?}"),
        }
        assert_eq!(next_hops.len(), 2);
        assert!(!next_hops.holds(addr(3)), "the refusal changed nothing");
        // Backend 2 was its address's last: it gives the next hop back as it moves.
        next_hops.set(2, addr(3)).unwrap();
        assert!(next_hops.holds(addr(3)) && !next_hops.holds(addr(2)));
        next_hops.remove(1);
        next_hops.set(3, addr(4)).unwrap();
        assert_eq!(next_hops.len(), 2);
    }

    #[test]
    fn check_joins_refuses_exactly_the_batches_join_would_stop_part_way() {
        // Random batches over 8 ids and 6 addresses, 4 hops: full often, moves within a batch.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut refused, mut taken) = (0, 0);
        for _ in 0..2_000 {
            let mut hops = Hops::new(4);
            for _ in 0..next(6) {
                let _ = hops.join(next(8) as u32, addr(next(6) as u8), || 0);
            }
            if next(3) == 0 {
                hops.leave(next(8) as u32);
            }
            let batch: Vec<(u32, IpAddr)> = (0..1 + next(5))
                .map(|_| (next(8) as u32, addr(next(6) as u8)))
                .collect();
            let checked = hops.check_joins(batch.iter().copied());
            let mut joined = Ok(());
            for (id, address) in &batch {
                if hops.join(*id, *address, || 0).is_err() {
                    joined = Err((*id, *address));
                    break;
                }
            }
            assert_eq!(checked, joined, "batch {batch:?}");
            if checked.is_err() {
                refused += 1;
            } else {
                taken += 1;
            }
        }
        assert!(
            refused > 100 && taken > 100,
            "refused {refused}, taken {taken}"
        );
    }
}
