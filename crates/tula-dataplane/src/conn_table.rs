//! The connection table as user space sees it: the bucket a flow lives in,
//! whether an entry is valid (its check binds its backend to its flow), and
//! the way holding a flow. The Rust twin of `conn_bucket()`/`conn_find()` in
//! bpf/balancer.c; the `conns` map holds `buckets` of `CONN_WAYS` entries.
//! Also [`Dataplane`]'s connection-table reads (each flow, or counts by
//! backend with the time of their last packets) and removals.

use std::collections::HashMap;

use aya::maps::IterableMap;

use crate::abi;
use crate::clock::stamp_jiffies;
use crate::dataplane::Dataplane;
use crate::error::{map_err, syscall_err, Result};
use crate::flow::{conn_check, hash64_abi, hash64_abi6, Flow};
use crate::rings;
use crate::spec::Conn;

/// One (VIP, backend) pair's flows in the connection table ([`Dataplane::conn_tally`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnTally {
    /// Entries pointing at the backend, however long ago their flow last sent.
    pub entries: u64,
    /// Entries whose flow sent a packet at or after the jiffy asked for.
    pub active: u64,
    /// The jiffy of the newest last packet among them.
    pub last_seen: u64,
}

/// The bucket of the flow with 64-bit hash `hash64` in a table of `buckets`.
pub(crate) fn bucket_index(hash64: u64, buckets: u32) -> u32 {
    (((hash64 >> 32) * u64::from(buckets)) >> 32) as u32
}

/// The bucket of `flow`.
pub(crate) fn bucket_of(flow: &abi::Flow, buckets: u32) -> u32 {
    bucket_index(hash64_abi(flow), buckets)
}

/// Whether `entry` holds a flow and its check matches (not empty, not torn).
pub(crate) fn valid(entry: &abi::ConnEntry) -> bool {
    entry.check != 0 && entry.check == conn_check(hash64_abi(&entry.flow), entry.backend)
}

/// [`valid`] for an entry of the IPv6 table.
pub(crate) fn valid6(entry: &abi::Conn6Entry) -> bool {
    entry.check != 0 && entry.check == conn_check(hash64_abi6(&entry.flow), entry.backend)
}

/// The way of `bucket` that holds `flow` with a valid entry.
pub(crate) fn find(bucket: &abi::ConnBucket, flow: &abi::Flow) -> Option<usize> {
    bucket
        .ways
        .iter()
        .position(|entry| entry.flow == *flow && valid(entry))
}

impl Dataplane {
    /// The backend `flow` sticks to, if the connection table has it (and its VIP exists).
    pub fn conn(&self, flow: &Flow) -> Result<Option<Conn>> {
        let raw = flow.to_abi();
        let index = bucket_of(&raw, self.conns.len());
        let bucket = self
            .conns
            .get(&index, 0)
            .map_err(map_err("conns", format!("reading the bucket of flow {flow}")))?;
        let Some(way) = find(&bucket, &raw) else {
            return Ok(None);
        };
        let vips = self.vip_ids()?;
        Ok(vip_of(&vips, &raw).map(|vip| Conn {
            backend: bucket.ways[way].backend,
            vip,
        }))
    }

    /// Every flow in the connection table of a VIP that exists (whether or
    /// not it sent a packet lately: see [`Dataplane::conn_tally`]).
    pub fn conns(&self) -> Result<Vec<(Flow, Conn)>> {
        let mut flows = Vec::new();
        self.walk_conns(|entry, vip| {
            if let Some(flow) = Flow::from_abi(&entry.flow) {
                flows.push((
                    flow,
                    Conn {
                        backend: entry.backend,
                        vip,
                    },
                ));
            }
        })?;
        Ok(flows)
    }

    /// The connection tables' flows (IPv4 and IPv6) counted by (VIP id,
    /// backend id): all entries, those whose last packet came at jiffy
    /// `active_since` or later, and the newest last packet. One pass over
    /// each table, in batches of buckets.
    pub fn conn_tally(&self, active_since: u64) -> Result<HashMap<(u32, u32), ConnTally>> {
        let mut tally: HashMap<(u32, u32), ConnTally> = HashMap::new();
        let mut count = |vip: u32, backend: u32, stamp: u64| {
            let seen = stamp_jiffies(stamp);
            let pair = tally.entry((vip, backend)).or_default();
            pair.entries += 1;
            pair.active += u64::from(seen >= active_since);
            pair.last_seen = pair.last_seen.max(seen);
        };
        self.walk_conns(|entry, vip| count(vip, entry.backend, entry.stamp))?;
        self.walk_conns6(|entry, vip| count(vip, entry.backend, entry.stamp))?;
        Ok(tally)
    }

    /// [`Dataplane::walk_conns`] over the IPv6 table, `conns6`.
    fn walk_conns6(&self, mut visit: impl FnMut(&abi::Conn6Entry, u32)) -> Result<()> {
        let vips = self.vip6_ids()?;
        for_each_bucket(self.conns6.map().fd(), self.conns6.len(), "conns6", |bucket: &abi::Conn6Bucket| {
            for entry in bucket.ways.iter().filter(|entry| valid6(entry)) {
                if let Some(vip) = vip6_of(&vips, &entry.flow) {
                    visit(entry, vip);
                }
            }
        })
    }

    /// Calls `visit` with each valid entry of a VIP that exists, and its VIP id.
    fn walk_conns(&self, mut visit: impl FnMut(&abi::ConnEntry, u32)) -> Result<()> {
        let vips = self.vip_ids()?;
        for_each_bucket(self.conns.map().fd(), self.conns.len(), "conns", |bucket: &abi::ConnBucket| {
            for entry in bucket.ways.iter().filter(|entry| valid(entry)) {
                if let Some(vip) = vip_of(&vips, &entry.flow) {
                    visit(entry, vip);
                }
            }
        })
    }

    /// Forgets `flow`: its next packet is placed by the scheduler again. (The
    /// bucket is read and written back whole: a flow the balancer placed in it
    /// in between is forgotten too, and placed again by its next packet.)
    pub fn remove_conn(&mut self, flow: &Flow) -> Result<()> {
        let raw = flow.to_abi();
        let index = bucket_of(&raw, self.conns.len());
        let mut bucket = self
            .conns
            .get(&index, 0)
            .map_err(map_err("conns", format!("reading the bucket of flow {flow}")))?;
        self.forget_syn(flow, &raw)?;
        let Some(way) = find(&bucket, &raw) else {
            return Ok(());
        };
        // The balancer stops looking at a bucket's first empty way: close the gap.
        bucket.ways.copy_within(way + 1.., way);
        bucket.ways[abi::CONN_WAYS as usize - 1] = abi::ConnEntry::default();
        self.conns
            .set(index, bucket, 0)
            .map_err(map_err("conns", format!("removing flow {flow}")))
    }

    /// Empties the slots where a CPU holds the SYN of `flow` (`raw`).
    fn forget_syn(&mut self, flow: &Flow, raw: &abi::Flow) -> Result<()> {
        let slot = (hash64_abi(raw) & u64::from(abi::SYN_SLOTS - 1)) as u32;
        for index in (slot..self.syns.len()).step_by(abi::SYN_SLOTS as usize) {
            let held = self
                .syns
                .get(&index, 0)
                .map_err(map_err("syns", format!("reading the SYN slot of flow {flow}")))?;
            if held.flow == *raw && held.check != 0 {
                self.syns
                    .set(index, abi::ConnEntry::default(), 0)
                    .map_err(map_err("syns", format!("forgetting the SYN of flow {flow}")))?;
            }
        }
        Ok(())
    }

    /// Flows the connection table holds at most.
    pub fn conn_table_capacity(&self) -> u32 {
        self.conns.len() * abi::CONN_WAYS
    }

    /// VIP ids by VIP key, as the `vips` map has them.
    fn vip_ids(&self) -> Result<HashMap<abi::VipKey, u32>> {
        ids_by_key(&self.vips, "vips")
    }

    /// IPv6 VIP ids by VIP key, as the `vips6` map has them.
    fn vip6_ids(&self) -> Result<HashMap<abi::Vip6Key, u32>> {
        ids_by_key(&self.vips6, "vips6")
    }
}

/// The VIP id of every key of `map` (`vips` or `vips6`, named `name`).
fn ids_by_key<K: aya::Pod + Eq + std::hash::Hash>(
    map: &aya::maps::HashMap<aya::maps::MapData, K, abi::VipMeta>,
    name: &'static str,
) -> Result<HashMap<K, u32>> {
    let mut ids = HashMap::new();
    for entry in map.iter() {
        let (key, meta) = entry.map_err(map_err(name, "listing VIPs"))?;
        ids.insert(key, meta.id);
    }
    Ok(ids)
}

/// Calls `visit` with every bucket of the array map `fd` (`name`, `buckets`
/// long), read in batches of 1024.
fn for_each_bucket<B: aya::Pod + Default>(
    fd: &aya::maps::MapFd,
    buckets: u32,
    name: &'static str,
    mut visit: impl FnMut(&B),
) -> Result<()> {
    const BATCH: u32 = 1024;
    let mut first = 0;
    while first < buckets {
        let count = BATCH.min(buckets - first);
        let batch: Vec<B> = rings::read_batch(fd, first, count).map_err(|e| {
            map_err(name, format!("reading buckets {first}..{}", first + count))(syscall_err("BPF_MAP_LOOKUP_BATCH", e))
        })?;
        batch.iter().for_each(&mut visit);
        first += count;
    }
    Ok(())
}

/// The id of the VIP a flow was sent to: its exact port, else the all-ports VIP.
pub(crate) fn vip_of(ids: &HashMap<abi::VipKey, u32>, flow: &abi::Flow) -> Option<u32> {
    let key = abi::VipKey {
        addr: flow.dst,
        port: flow.dport,
        proto: flow.proto,
        pad: 0,
    };
    ids.get(&key)
        .or_else(|| ids.get(&abi::VipKey { port: 0, ..key }))
        .copied()
}

/// [`vip_of`] for an IPv6 flow.
fn vip6_of(ids: &HashMap<abi::Vip6Key, u32>, flow: &abi::Flow6) -> Option<u32> {
    let key = abi::Vip6Key {
        addr: flow.dst,
        port: flow.dport,
        proto: flow.proto,
        pad: 0,
    };
    ids.get(&key)
        .or_else(|| ids.get(&abi::Vip6Key { port: 0, ..key }))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(port: u16) -> abi::Flow {
        abi::Flow {
            src: 0x0100_12c6,
            dst: 0x0171_00cb,
            sport: port.to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            pad: [0; 3],
        }
    }

    fn entry(flow: abi::Flow, backend: u32) -> abi::ConnEntry {
        abi::ConnEntry {
            flow,
            backend,
            check: conn_check(hash64_abi(&flow), backend),
            stamp: 1,
        }
    }

    #[test]
    fn a_torn_entry_is_not_valid() {
        let a = entry(flow(1000), 3);
        let b = entry(flow(1001), 4);
        assert!(valid(&a) && valid(&b));
        // One flow's key with the other's backend (and either check) is refused.
        for torn in [
            abi::ConnEntry { backend: b.backend, ..a },
            abi::ConnEntry { check: b.check, ..a },
            abi::ConnEntry { flow: b.flow, ..a },
        ] {
            assert!(!valid(&torn), "{torn:?}");
        }
        assert!(!valid(&abi::ConnEntry::default()), "an empty way");
    }

    #[test]
    fn find_compares_the_whole_key() {
        let mut bucket = abi::ConnBucket::default();
        bucket.ways[5] = entry(flow(1000), 3);
        assert_eq!(find(&bucket, &flow(1000)), Some(5));
        assert_eq!(find(&bucket, &flow(1001)), None);
        let mut other_proto = flow(1000);
        other_proto.proto = 17;
        assert_eq!(find(&bucket, &other_proto), None);
    }

    #[test]
    fn buckets_spread_flows_evenly() {
        let buckets = 64;
        let mut load = vec![0u32; buckets as usize];
        for port in 0..6400 {
            load[bucket_of(&flow(port), buckets) as usize] += 1;
        }
        assert!(load.iter().all(|&n| (60..=140).contains(&n)), "{load:?}");
    }
}
