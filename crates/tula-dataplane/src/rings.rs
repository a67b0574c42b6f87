//! The `ring` map: `max_vips + SPARE_RINGS` Maglev rings of `ring_size` backend
//! ids laid end to end. A VIP's ring is replaced by writing the new one into a
//! free ring and then flipping the VIP's `vip_meta.ring` (one hash update, so
//! a packet sees either the old ring or the new one, never a mix). The old
//! ring goes to the back of a FIFO free list, so it is the last to be
//! rewritten while a packet on another CPU may still be reading it.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd};

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

/// Writes `values` to consecutive entries of an array map of u32, starting at
/// `first`, in one system call instead of one per slot.
pub(crate) fn write_u32s(map: impl AsFd, first: u32, values: &[u32]) -> std::io::Result<()> {
    let keys: Vec<u32> = (first..).take(values.len()).collect();
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

/// Reads `count` consecutive entries of an array map of u32 from `first` on, in one system call.
pub(crate) fn read_u32s(map: impl AsFd, first: u32, count: u32) -> std::io::Result<Vec<u32>> {
    let mut keys = vec![0u32; count as usize];
    let mut values = vec![0u32; count as usize];
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
