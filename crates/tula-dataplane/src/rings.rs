//! The `ring` map: `max_vips + SPARE_RINGS` Maglev rings of `ring_size` backend
//! ids laid end to end, each stored as `ring_chunks(ring_size)` elements of
//! `RING_CHUNK_SLOTS` ids (4 bytes a slot; one batch system call a ring). A VIP's ring is replaced by writing the new one into a
//! free ring and then flipping the VIP's `vip_meta.ring` (one hash update, so
//! a packet sees either the old ring or the new one, never a mix). The old
//! ring goes to the back of a FIFO free list, so it is the last to be
//! rewritten while a packet on another CPU may still be reading it.
//!
//! Also the layout of a round-robin ring, which the balancer walks one slot
//! per new flow ([`round_robin_ring`]).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::{AsFd, AsRawFd};

use tula_maglev::{RingBackend, EMPTY_SLOT};

use crate::abi;

/// The ring of a round-robin VIP: `size` slots in which the backends take
/// turns in proportion to their weights, each one's turns spread evenly (for
/// weights 1:3, `b a b b` over and over). The balancer's per-CPU cursor walks
/// it one slot per new flow, so consecutive new flows on a CPU go to the
/// backends in this order. Backends take turns in the order given, and those of
/// weight 0 get none; with no weight above 0 every slot is [`EMPTY_SLOT`].
///
/// Turn k of a backend of weight w falls at (k + 1/2) / w: the next slot goes
/// to the earliest such time (ties to the earlier backend). Equal weights
/// give plain rotation. Deterministic, O(size log n).
pub fn round_robin_ring(backends: &[RingBackend], size: u32) -> Vec<u32> {
    let mut turns: BinaryHeap<Reverse<Turn>> = backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight > 0)
        .map(|(position, b)| {
            Reverse(Turn {
                twice_taken_plus_one: 1,
                weight: b.weight.into(),
                position,
                id: b.id,
            })
        })
        .collect();
    let mut slots = Vec::with_capacity(size as usize);
    for _ in 0..size {
        let Some(mut next) = turns.peek_mut() else {
            slots.resize(size as usize, EMPTY_SLOT);
            break;
        };
        slots.push(next.0.id);
        next.0.twice_taken_plus_one += 2;
    }
    slots
}

/// A backend's next turn in a round-robin ring, due at
/// `twice_taken_plus_one / (2 * weight)`.
#[derive(Debug, PartialEq, Eq)]
struct Turn {
    twice_taken_plus_one: u64,
    weight: u64,
    position: usize,
    id: u32,
}

impl Ord for Turn {
    fn cmp(&self, other: &Turn) -> Ordering {
        // a / wa against b / wb, without division.
        (self.twice_taken_plus_one * other.weight)
            .cmp(&(other.twice_taken_plus_one * self.weight))
            .then(self.position.cmp(&other.position))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Turn) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Free rings, oldest-freed first.
#[derive(Debug)]
pub(crate) struct FreeRings {
    free: VecDeque<u32>,
}

impl FreeRings {
    /// All `rings` free except those in `in_use`.
    pub(crate) fn new(rings: u32, in_use: impl IntoIterator<Item = u32>) -> FreeRings {
        let in_use: std::collections::HashSet<u32> = in_use.into_iter().collect();
        FreeRings {
            free: (0..rings).filter(|r| !in_use.contains(r)).collect(),
        }
    }

    /// The ring freed longest ago.
    pub(crate) fn take(&mut self) -> Option<u32> {
        self.free.pop_front()
    }

    /// Gives back a ring no VIP points at any more.
    pub(crate) fn release(&mut self, ring: u32) {
        self.free.push_back(ring);
    }
}

/// Writes `slots` as ring number `ring` (of `ring_size` slots; the last
/// chunk's tail [`EMPTY_SLOT`]) of the mmapable ring map `map`, through a
/// mapping of just the pages that hold it: one copy instead of a batch update
/// that the kernel runs element by element. The mapping is dropped at once, so
/// the ring map's pages never count in the daemon's resident memory.
pub(crate) fn write_mapped(
    map: impl AsFd,
    ring: u32,
    ring_size: u32,
    slots: &[u32],
) -> std::io::Result<()> {
    let per_ring = abi::ring_chunks(ring_size) as usize * abi::RING_CHUNK_SLOTS as usize;
    let slot_bytes = std::mem::size_of::<u32>();
    assert!(
        slots.len() <= per_ring,
        "{} slots for a ring of {ring_size}",
        slots.len()
    );
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    let start = ring as usize * per_ring * slot_bytes;
    let first_page = start / page * page;
    let length = (start + per_ring * slot_bytes).div_ceil(page) * page - first_page;
    // SAFETY: a fresh shared mapping of the map's fd; the kernel refuses a
    // range beyond the map or a map that is not mmapable.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            length,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            map.as_fd().as_raw_fd(),
            first_page as libc::off_t,
        )
    };
    if address == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the ring lies within the mapping (it spans the ring's pages). The
    // ring is a free one: no VIP points at it, so only a packet that took it
    // before its VIP moved on can read it, as with a batch update.
    let ring_slots = unsafe {
        std::slice::from_raw_parts_mut(
            address.cast::<u8>().add(start - first_page).cast::<u32>(),
            per_ring,
        )
    };
    ring_slots[..slots.len()].copy_from_slice(slots);
    ring_slots[slots.len()..].fill(EMPTY_SLOT);
    // The VIP is pointed at this ring only after every slot is stored.
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: unmaps exactly what was mapped above; `ring_slots` is not used after.
    unsafe { libc::munmap(address, length) };
    Ok(())
}

/// BPF_MAP_UPDATE_BATCH's part of `union bpf_attr` (aya 0.14 has no batch call).
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

fn bpf_batch(command: libc::c_long, attr: &mut BatchAttr) -> std::io::Result<()> {
    // SAFETY: attr and the buffers it points to outlive the call; the kernel
    // touches `count` keys and values and writes back only `attr.count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `values` to consecutive elements of an array map, starting at
/// `first`, in one system call instead of one per element.
pub(crate) fn write_batch<T: aya::Pod>(
    map: impl AsFd,
    first: u32,
    values: &[T],
) -> std::io::Result<()> {
    let keys: Vec<u32> = (first..).take(values.len()).collect();
    write_batch_at(map, &keys, values)
}

/// Writes `values[i]` to element `keys[i]` of an array map, in one system call.
pub(crate) fn write_batch_at<T: aya::Pod>(
    map: impl AsFd,
    keys: &[u32],
    values: &[T],
) -> std::io::Result<()> {
    assert_eq!(keys.len(), values.len(), "a key per value");
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: values.len() as u32,
        map_fd: map.as_fd().as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    bpf_batch(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    check_count(attr.count, values.len())
}

/// Reads `count` consecutive elements of an array map from `first` on, in one system call.
pub(crate) fn read_batch<T: aya::Pod + Default>(
    map: impl AsFd,
    first: u32,
    count: u32,
) -> std::io::Result<Vec<T>> {
    let mut keys = vec![0u32; count as usize];
    let mut values = vec![T::default(); count as usize];
    // The kernel starts after the key in in_batch: the one before `first`, or the start.
    let before = first.wrapping_sub(1);
    let mut next = 0u32;
    let mut attr = BatchAttr {
        in_batch: if first == 0 {
            0
        } else {
            &before as *const u32 as u64
        },
        out_batch: &mut next as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: map.as_fd().as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    match bpf_batch(BPF_MAP_LOOKUP_BATCH, &mut attr) {
        // ENOENT: the map ended; the count says how far it got.
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
        _ => {}
    }
    check_count(attr.count, count as usize)?;
    Ok(values)
}

/// The first `ring_size` slots held by `chunks`.
pub(crate) fn from_chunks(chunks: &[abi::RingChunk], ring_size: u32) -> Vec<u32> {
    let mut slots: Vec<u32> = chunks.iter().flat_map(|c| c.slots).collect();
    slots.truncate(ring_size as usize);
    slots
}

fn check_count(done: u32, wanted: usize) -> std::io::Result<()> {
    if done as usize != wanted {
        return Err(std::io::Error::other(format!(
            "batch went through {done} of {wanted} entries"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(weights: &[u32]) -> Vec<RingBackend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| RingBackend {
                id: 10 + i as u32,
                key: format!("198.18.100.{i}"),
                weight,
            })
            .collect()
    }

    #[test]
    fn equal_weights_rotate() {
        let ring = round_robin_ring(&backends(&[1, 1, 1]), 7);
        assert_eq!(ring, [10, 11, 12, 10, 11, 12, 10]);
    }

    #[test]
    fn weights_interleave_in_proportion() {
        let ring = round_robin_ring(&backends(&[1, 3]), 8);
        assert_eq!(ring, [11, 10, 11, 11, 11, 10, 11, 11]);
        // Over a large ring every backend's share is its weight's, within one slot.
        let weights = [1, 2, 7, 1000, 0, 5];
        let total: u32 = weights.iter().sum();
        let ring = round_robin_ring(&backends(&weights), 65537);
        for (i, &weight) in weights.iter().enumerate() {
            let share = ring.iter().filter(|&&id| id == 10 + i as u32).count() as f64;
            let fair = 65537.0 * f64::from(weight) / f64::from(total);
            assert!(
                (share - fair).abs() <= 1.0,
                "backend {i}: {share} vs {fair}"
            );
        }
        // Turns are spread: weight 2 of 3 never gets three in a row.
        let ring = round_robin_ring(&backends(&[1, 2]), 300);
        assert!(!ring.windows(3).any(|w| w.iter().all(|&id| id == 11)));
    }

    #[test]
    fn no_weight_means_an_empty_ring() {
        assert_eq!(round_robin_ring(&backends(&[0, 0]), 5), [EMPTY_SLOT; 5]);
        assert_eq!(round_robin_ring(&[], 3), [EMPTY_SLOT; 3]);
    }

    /// A ring's slots as `ring` map elements: chunks of `RING_CHUNK_SLOTS`, the
    /// last one padded with [`EMPTY_SLOT`].
    fn to_chunks(slots: &[u32]) -> Vec<abi::RingChunk> {
        slots
            .chunks(abi::RING_CHUNK_SLOTS as usize)
            .map(|part| {
                let mut chunk = abi::RingChunk::default();
                chunk.slots[..part.len()].copy_from_slice(part);
                chunk
            })
            .collect()
    }

    #[test]
    fn chunks_hold_a_ring_and_pad_the_last_one() {
        let ring: Vec<u32> = (0..131).collect();
        let chunks = to_chunks(&ring);
        assert_eq!(chunks.len() as u32, abi::ring_chunks(131));
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].slots[2], 130);
        assert_eq!(chunks[2].slots[3], EMPTY_SLOT);
        assert_eq!(from_chunks(&chunks, 131), ring);
    }

    #[test]
    fn a_freed_ring_is_reused_last() {
        let mut rings = FreeRings::new(4, [1]);
        assert_eq!(rings.take(), Some(0));
        rings.release(0);
        assert_eq!(rings.take(), Some(2));
        assert_eq!(rings.take(), Some(3));
        assert_eq!(rings.take(), Some(0));
        assert_eq!(rings.take(), None);
    }
}
