#!/usr/bin/env bash
# Reproduces every figure in docs/BENCHMARKS.md: the machine, the per-packet
# test-run cost, what one random read of map memory costs (the bulk of a new
# flow), the data-plane scenarios against the floor, the SYN-flood
# test, and the control plane at 1,000 VIPs x 100 backends with the daemon's
# memory and API latency. Needs root (namespaces, XDP). Takes a few minutes.
#
#   scripts/bench.sh             everything
#   scripts/bench.sh dataplane   packet cost, memory cost + data-plane scenarios only
#
# The data-plane part also writes target/bench/dataplane.json: {"machine",
# "paths": [{"name", "method" (packet_cost | live_frames), "ns_per_packet",
# "floor_ns_per_packet", "mpps"}]}, each floor measured in the same run by the
# same method (crates/tula-bench/src/results.rs), and ends with issue 13's
# targets judged on that file (met, NOT MET, or not measured).
#   scripts/bench.sh control     control plane + API + web UI pages only
#
# TULA_BENCH_ROUNDS (default 5) sets the rounds per figure, TULA_BENCH_PACKETS
# (default 2,000,000) the packets per data-plane run, TULA_BENCH_CPU the CPU
# the data-plane runs happen on (default: the last one).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root (it builds network namespaces and loads XDP programs)" >&2; exit 1; }
what="${1:-all}"
case "$what" in all|dataplane|control) ;; *) echo "bench.sh: unknown part $what (all, dataplane, control)" >&2; exit 2 ;; esac
./scripts/setup.sh

echo "== machine"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "cores:  $(nproc)"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "kernel: $(uname -sr)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"

# The benches and the daemon they start, all optimised.
cargo build --release --locked --bin tula
export TULA_BIN="$PWD/target/release/tula"

if [ "$what" != control ]; then
  echo; echo "== per-packet cost (BPF_PROG_TEST_RUN, crates/tula-dataplane/benches/packet_cost.rs)"
  cargo bench --locked -p tula-dataplane --bench packet_cost
  echo; echo "== memory cost of one random read (what a new flow's table bucket costs, crates/tula-dataplane/benches/memory_cost.rs)"
  cargo bench --locked -p tula-dataplane --bench memory_cost
  echo; echo "== data plane (live frames through the balancer, crates/tula-bench/benches/dataplane.rs)"
  cargo bench --locked -p tula-bench --bench dataplane
fi
if [ "$what" != dataplane ]; then
  echo; echo "== control plane and API (crates/tula-bench/benches/control.rs)"
  cargo bench --locked -p tula-bench --bench control
  echo; echo "== web UI pages at 1,000 VIPs x 100 backends (crates/tula-bench/benches/ui.rs)"
  cargo bench --locked -p tula-bench --bench ui
fi
echo; echo "== load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
