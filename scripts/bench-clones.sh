#!/usr/bin/env bash
# Full clones on a contended storage (issue 16): the adaptive clone limit against
# --clones-per-host 1 and 20, same run, interleaved; scripts/bench-clones.py says how.
# The event logs stay in bench-out/clones/.
#
# usage: scripts/bench-clones.sh [RUNS] [VMS] [HOLD_MS]   (default 3 20 1000;
#        PVESIM_TIME_SCALE default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
vms="${2:-20}"
hold="${3:-1000}"
cargo build --release --quiet
bin="$PWD/target/release/driver"
export PVESIM_TIME_SCALE="${PVESIM_TIME_SCALE:-1}"
out=bench-out/clones
rm -rf "$out"
mkdir -p "$out"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "driver: $($bin --version); commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); time scale: $PVESIM_TIME_SCALE"
echo
python3 scripts/bench-clones.py "$runs" "$bin" "$out" "$vms" "$hold"
