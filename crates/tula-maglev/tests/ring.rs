//! Properties of the Maglev ring: balance, weights, minimal disruption, determinism, input checks.

use tula_maglev::{is_prime, MaglevError, Ring, RingBackend, DEFAULT_RING_SIZE, EMPTY_SLOT};

fn backend(id: u32, weight: u32) -> RingBackend {
    RingBackend {
        id,
        key: format!("198.18.{}.{}", id / 250, id % 250 + 2),
        weight,
    }
}

fn equal(n: u32) -> Vec<RingBackend> {
    (0..n).map(|id| backend(id, 1)).collect()
}

/// Largest relative deviation of any backend's slot count from its weight-proportional share.
fn worst_deviation(ring: &Ring, backends: &[RingBackend]) -> f64 {
    let shares = ring.shares();
    let total: u64 = backends.iter().map(|b| b.weight as u64).sum();
    backends
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| {
            let fair = ring.size() as f64 * b.weight as f64 / total as f64;
            let got = *shares.get(&b.id).unwrap_or(&0) as f64;
            (got - fair).abs() / fair
        })
        .fold(0.0, f64::max)
}

/// Slots changed by removing `removed`, divided by the slots it held.
fn disruption(backends: &[RingBackend], removed: usize) -> f64 {
    let before = Ring::build(backends, DEFAULT_RING_SIZE).unwrap();
    let mut rest = backends.to_vec();
    let gone = rest.remove(removed);
    let after = Ring::build(&rest, DEFAULT_RING_SIZE).unwrap();
    let share = before.shares()[&gone.id];
    // Every slot of the removed backend must move; the figure says how many others moved too.
    assert!(after.slots().iter().all(|&s| s != gone.id));
    before.slots_changed(&after).unwrap() as f64 / share as f64
}

/// Mean and worst disruption over removing each of a spread of backends, one at a time.
fn disruption_over(n: u32, samples: usize) -> (f64, f64) {
    let b = equal(n);
    let step = (n as usize / samples).max(1);
    let figures: Vec<f64> = (0..n as usize)
        .step_by(step)
        .map(|i| disruption(&b, i))
        .collect();
    let mean = figures.iter().sum::<f64>() / figures.len() as f64;
    (mean, figures.iter().cloned().fold(0.0, f64::max))
}

#[test]
fn equal_weights_are_balanced_within_one_percent() {
    for n in [1, 2, 3, 10, 100, 333, 500, 650] {
        let b = equal(n);
        let ring = Ring::build(&b, DEFAULT_RING_SIZE).unwrap();
        assert_eq!(
            ring.shares().len(),
            n as usize,
            "n = {n}: every backend has slots"
        );
        let dev = worst_deviation(&ring, &b);
        assert!(
            dev <= 0.01,
            "n = {n}: worst share is {:.3}% off fair",
            dev * 100.0
        );
    }
}

#[test]
fn weights_are_honoured_within_one_percent() {
    let cases: &[&[u32]] = &[
        &[1, 3],
        &[1, 2, 5],
        &[1, 1, 1, 7],
        &[10, 20, 30, 40],
        &[1, 1000],
        &[3, 5, 7, 11, 13, 17],
    ];
    for weights in cases {
        let b: Vec<RingBackend> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| backend(i as u32, w))
            .collect();
        let ring = Ring::build(&b, DEFAULT_RING_SIZE).unwrap();
        let dev = worst_deviation(&ring, &b);
        assert!(
            dev <= 0.01,
            "weights {weights:?}: worst share is {:.3}% off; shares {:?}",
            dev * 100.0,
            ring.shares()
        );
    }
    // Many backends with mixed weights: 100 of weight 1, 100 of weight 4.
    let b: Vec<RingBackend> = (0..200)
        .map(|i| backend(i, if i % 2 == 0 { 1 } else { 4 }))
        .collect();
    let ring = Ring::build(&b, DEFAULT_RING_SIZE).unwrap();
    let dev = worst_deviation(&ring, &b);
    assert!(
        dev <= 0.01,
        "200 mixed: worst share is {:.3}% off",
        dev * 100.0
    );
}

#[test]
fn weight_zero_gets_no_slots_and_changes_nothing_else() {
    let mut b = equal(5);
    let without = Ring::build(&b, DEFAULT_RING_SIZE).unwrap();
    b.push(backend(99, 0));
    let with = Ring::build(&b, DEFAULT_RING_SIZE).unwrap();
    assert_eq!(with, without);
    assert!(!with.shares().contains_key(&99));
}

#[test]
fn removing_one_of_ten_moves_at_most_1_05x_its_share() {
    let (mean, worst) = disruption_over(10, 10);
    println!("disruption N=10: mean {mean:.3}x worst {worst:.3}x");
    assert!(worst <= 1.05, "N=10: disruption {worst:.3}x");
}

#[test]
fn removing_one_of_a_hundred_moves_at_most_1_7x_its_share() {
    let (mean, worst) = disruption_over(100, 20);
    println!("disruption N=100: mean {mean:.3}x worst {worst:.3}x");
    assert!(worst <= 1.7, "N=100: disruption {worst:.3}x");
}

#[test]
fn removing_one_of_a_thousand_prints_its_disruption() {
    // 65537 slots give 1000 backends only ~65 slots each; Maglev then trades disruption for balance.
    let (mean, worst) = disruption_over(1000, 10);
    println!("disruption N=1000: mean {mean:.3}x worst {worst:.3}x");
    assert!(worst < 10.0, "N=1000: disruption {worst:.3}x");
}

#[test]
fn reweighting_moves_slots_only_to_or_from_the_reweighted_backend() {
    let before_set = equal(20);
    let mut after_set = before_set.clone();
    after_set[7].weight = 2;
    let before = Ring::build(&before_set, DEFAULT_RING_SIZE).unwrap();
    let after = Ring::build(&after_set, DEFAULT_RING_SIZE).unwrap();
    let gained = after.shares()[&7] - before.shares()[&7];
    let changed = before.slots_changed(&after).unwrap();
    println!("reweight 1 -> 2 of 20: backend gained {gained} slots, {changed} changed");
    assert!(
        changed as f64 <= gained as f64 * 1.1,
        "{changed} slots changed for {gained} gained"
    );
}

#[test]
fn same_set_in_any_order_gives_the_same_ring() {
    let b: Vec<RingBackend> = (0..50).map(|i| backend(i, 1 + i % 4)).collect();
    let reference = Ring::build(&b, DEFAULT_RING_SIZE).unwrap();
    let mut reversed = b.clone();
    reversed.reverse();
    assert_eq!(
        Ring::build(&reversed, DEFAULT_RING_SIZE).unwrap(),
        reference
    );
    let mut shuffled = b.clone();
    // A fixed scramble: interleave odd and even positions.
    shuffled.sort_by_key(|x| (x.id % 2, u32::MAX - x.id));
    assert_eq!(
        Ring::build(&shuffled, DEFAULT_RING_SIZE).unwrap(),
        reference
    );
}

#[test]
fn ring_is_stable_across_processes() {
    // Pinned slots: a different process, machine or toolchain must produce these.
    let ring = Ring::build(&equal(3), DEFAULT_RING_SIZE).unwrap();
    assert_eq!(&ring.slots()[..16], &PINNED_FIRST_SLOTS);
}
// Computed by an independent Python implementation of the paper's pseudo-code with the documented hash.
const PINNED_FIRST_SLOTS: [u32; 16] = [1, 2, 1, 0, 2, 0, 0, 1, 1, 2, 2, 0, 2, 0, 1, 1];

#[test]
fn configurable_prime_sizes() {
    for size in [251, 4099, 65537, 131071] {
        let b = equal(10);
        let ring = Ring::build(&b, size).unwrap();
        assert_eq!(ring.size(), size);
        assert_eq!(ring.slots().len(), size as usize);
        assert!(
            ring.slots().iter().all(|&s| s < 10),
            "size {size}: every slot filled"
        );
    }
}

#[test]
fn non_prime_size_is_rejected_naming_the_value() {
    let err = Ring::build(&equal(3), 65536).unwrap_err();
    assert_eq!(err, MaglevError::SizeNotPrime(65536));
    assert_eq!(err.to_string(), "ring size 65536 is not prime");
}

#[test]
fn size_not_above_backend_count_is_rejected_naming_the_values() {
    let err = Ring::build(&equal(7), 7).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ring size 7 must be larger than the number of backends (7)"
    );
    let err = Ring::build(&equal(20), 13).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ring size 13 must be larger than the number of backends (20)"
    );
}

#[test]
fn duplicate_keys_and_ids_and_reserved_id_are_rejected() {
    let mut b = equal(3);
    b.push(RingBackend {
        id: 9,
        key: b[1].key.clone(),
        weight: 1,
    });
    assert_eq!(
        Ring::build(&b, 251).unwrap_err().to_string(),
        "backend key \"198.18.0.3\" appears more than once"
    );

    let mut b = equal(3);
    b.push(RingBackend {
        id: 1,
        key: "198.18.9.9".into(),
        weight: 1,
    });
    assert_eq!(
        Ring::build(&b, 251).unwrap_err().to_string(),
        "backend id 1 is used by both \"198.18.0.3\" and \"198.18.9.9\""
    );

    let b = vec![RingBackend {
        id: EMPTY_SLOT,
        key: "198.18.0.2".into(),
        weight: 1,
    }];
    assert_eq!(
        Ring::build(&b, 251).unwrap_err().to_string(),
        "backend \"198.18.0.2\" has id 4294967295, which is reserved for empty slots"
    );
}

#[test]
fn no_serving_backend_gives_an_empty_ring() {
    for b in [vec![], vec![backend(1, 0), backend(2, 0)]] {
        let ring = Ring::build(&b, DEFAULT_RING_SIZE).unwrap();
        assert_eq!(ring.size(), DEFAULT_RING_SIZE);
        assert!(ring.is_empty());
        assert!(ring.slots().iter().all(|&s| s == EMPTY_SLOT));
        assert!(ring.shares().is_empty());
        assert_eq!(ring.lookup(12345), None);
    }
    let ring = Ring::build(&equal(1), 251).unwrap();
    assert!(!ring.is_empty());
    assert_eq!(ring.lookup(12345), Some(0));
}

#[test]
fn lookup_scales_the_hash_onto_the_ring_like_the_data_plane() {
    let ring = Ring::build(&equal(10), 251).unwrap();
    for hash in [0u32, 1, 250, 251, 1000, u32::MAX] {
        assert_eq!(
            ring.lookup(hash),
            Some(ring.slots()[((hash as u64 * 251) >> 32) as usize])
        );
    }
}

#[test]
fn is_prime_agrees_with_a_sieve() {
    let limit = 100_000usize;
    let mut composite = vec![false; limit];
    for i in 2..limit {
        if !composite[i] {
            for j in (i * i..limit).step_by(i) {
                composite[j] = true;
            }
        }
    }
    for (n, &is_composite) in composite.iter().enumerate() {
        assert_eq!(is_prime(n as u32), n >= 2 && !is_composite, "n = {n}");
    }
    assert!(is_prime(4_294_967_291)); // largest u32 prime
    assert!(!is_prime(u32::MAX));
    assert!(!is_prime(65521 * 65519));
}
