//! The connection table as user space sees it: the bucket a flow lives in,
//! whether an entry is valid (its check binds its backend to its flow), and
//! the way holding a flow. The Rust twin of `conn_bucket()`/`conn_find()` in
//! bpf/balancer.c; the `conns` map holds `buckets` of `CONN_WAYS` entries.

use crate::abi;
use crate::flow::{conn_check, hash64_abi};

/// The bucket of the flow with 64-bit hash `hash64` in a table of `buckets`.
pub(crate) fn bucket_index(hash64: u64, buckets: u32) -> u32 {
    ((hash64 >> 32) * u64::from(buckets) >> 32) as u32
}

/// The bucket of `flow`.
pub(crate) fn bucket_of(flow: &abi::Flow, buckets: u32) -> u32 {
    bucket_index(hash64_abi(flow), buckets)
}

/// Whether `entry` holds a flow and its check matches (not empty, not torn).
pub(crate) fn valid(entry: &abi::ConnEntry) -> bool {
    entry.check != 0 && entry.check == conn_check(hash64_abi(&entry.flow), entry.backend)
}

/// The way of `bucket` that holds `flow` with a valid entry.
pub(crate) fn find(bucket: &abi::ConnBucket, flow: &abi::Flow) -> Option<usize> {
    bucket
        .ways
        .iter()
        .position(|entry| entry.flow == *flow && valid(entry))
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
