#!/usr/bin/env bash
# Nested PVE on the simulator at a realistic time scale (issue 8): `driver create
# --events` of n3-deep (PVE in PVE, VM inside: 3 levels) and n2-wide (2 nested PVEs
# x 10 VMs) on -H sim, at the default parallelism, with --parallelism 1 (the
# baseline: one step at a time, nested drivers included), and for n2-wide with
# --parallelism 10 --clones-per-host 10 (no per-host clone limit in the way). Each
# run in a fresh DRIVER_STATE_DIR, then `destroy --yes` (timed apart). From the
# events: makespan / critical path, speed-up over --parallelism 1, per-level
# delegation overhead, where the time goes (scripts/bench-nested.py says how).
# Prints markdown for BENCHMARKS.md; the stamped event logs stay in bench-out/nested/
# (`python3 scripts/bench-nested.py analyse bench-out/nested/*.ndjson` re-reads them).
#
# usage: scripts/bench-nested.sh [RUNS]   (default 3; PVESIM_TIME_SCALE default 1;
#        BENCH_NESTED_CASES=n2-wide:default,n2-wide:p8c4 runs only those cases)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
cargo build --release --quiet
bin="$PWD/target/release/driver"
export PVESIM_TIME_SCALE="${PVESIM_TIME_SCALE:-1}"
unset PVESIM_FAULTS
out=bench-out/nested
rm -rf "$out"
mkdir -p "$out"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "driver: $($bin --version); commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); time scale: $PVESIM_TIME_SCALE"
echo
python3 scripts/bench-nested.py run "$runs" "$bin" "$out"
