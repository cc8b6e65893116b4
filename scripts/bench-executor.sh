#!/usr/bin/env bash
# Benchmark of the executor (engine/examples/bench_executor.rs): overhead per
# node with a no-op runner at 10k nodes, and wide-50 makespan vs ideal at
# --parallelism 8 and 1. Prints markdown for BENCHMARKS.md.
# usage: scripts/bench-executor.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-out
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
cargo run --quiet --release -p engine --example bench_executor -- "${1:-5}" bench-out/state
