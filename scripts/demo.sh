#!/usr/bin/env bash
# Builds tula and runs the lab demo: a namespaced network with a client, a
# router, the load balancer and three backends on different subnets.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (the lab builds network namespaces)" >&2; exit 1; }
./scripts/setup.sh
cargo build --release --locked --bin tula
exec ./target/release/tula lab demo "$@"
