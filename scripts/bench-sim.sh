#!/usr/bin/env bash
# Benchmarks on the built-in simulator (release build, time scale 0 unless set):
#  1. `driver test -M wide-50 -H sim` (50 sibling VMs: create, verify SSH, destroy)
#     at --parallelism 8 next to --parallelism 1 (the sequential original's way).
#  2. `driver test` of n1-basic, n2-quick and n3-deep: one, two and three levels,
#     so the difference between rows is the cost of one level of delegation
#     (upload of driver, nested simulator start, child driver run over SSH).
# Prints markdown rows for BENCHMARKS.md.
# usage: scripts/bench-sim.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
cargo build --release --quiet
bin="$PWD/target/release/driver"
state="$(mktemp -d)"
trap 'rm -rf "$state"' EXIT
export DRIVER_STATE_DIR="$state"
run() { echo "$bin" test -M "$1" -H sim --reports-dir "$state/reports" "${@:2}"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $($bin --version)"
echo "time scale: ${PVESIM_TIME_SCALE:-0}"
echo
echo "| command | runs | median | min | peak RSS (median) | ratio to the group's baseline (last row) |"
echo "|---|---|---|---|---|---|"
# shellcheck disable=SC2046
python3 scripts/bench.py "$runs" \
  "driver test -M wide-50 -H sim --parallelism 8" -- $(run wide-50 --parallelism 8) --- \
  "driver test -M wide-50 -H sim --parallelism 1 (baseline)" -- $(run wide-50 --parallelism 1)
# shellcheck disable=SC2046
python3 scripts/bench.py "$runs" \
  "driver test -M n3-deep -H sim (3 levels)" -- $(run n3-deep) --- \
  "driver test -M n2-quick -H sim (2 levels)" -- $(run n2-quick) --- \
  "driver test -M n1-basic -H sim (1 level, baseline)" -- $(run n1-basic)
