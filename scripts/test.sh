#!/usr/bin/env bash
# The whole test suite: BPF packet tests, Maglev, config, netlink, and the
# end-to-end lab tests. Needs root (namespaces, XDP). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (it builds network namespaces and loads XDP programs)" >&2; exit 1; }
./scripts/setup.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads="${TULA_TEST_THREADS:-4}"
# Benchmarks run once at a tiny size so their harness cannot rot; figures come from scripts/bench.sh.
TULA_BENCH_QUICK=1 cargo test --workspace --benches --locked
