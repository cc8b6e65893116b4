#!/usr/bin/env bash
# Create + destroy of N flat VMs through `driver` on the built-in simulator (time scale 0),
# at N = 100 and N = 1,000: does the time per VM stay flat as the simulator holds more
# guests? (issue 12: its state was rewritten whole after every change.)
# Each measurement starts from a fresh state folder and times `driver create` followed by
# `driver destroy --yes` of `scripts/gen-manifest.py flat N` (SSH checked on every VM, as
# by default). Runs are interleaved (A B A B ...); medians are reported, and the time per
# VM at 1,000 over the time per VM at 100 (target: at most 1.5).
# usage: scripts/bench-sim-scale.sh [RUNS] [BASELINE_DRIVER]
#   RUNS             runs of each row (default 5)
#   BASELINE_DRIVER  another driver binary measured in the same run (e.g. main's build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
base="${2:-}"
cargo build --release --quiet
bin="$PWD/target/release/driver"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PVESIM_TIME_SCALE=0
for n in 100 1000; do
  python3 scripts/gen-manifest.py flat "$n" "$work/flat-$n.yaml"
done
cat > "$work/once.sh" <<'ONCE'
#!/usr/bin/env bash
set -euo pipefail
export DRIVER_STATE_DIR="$(mktemp -d)"
trap 'rm -rf "$DRIVER_STATE_DIR"' EXIT
"$1" create --manifest-file "$2" -H sim >/dev/null 2>"$DRIVER_STATE_DIR/../create.$$.err" || { cat "$DRIVER_STATE_DIR/../create.$$.err" >&2; exit 1; }
"$1" destroy --manifest-file "$2" -H sim --yes >/dev/null 2>&1
rm -f "$DRIVER_STATE_DIR/../create.$$.err"
ONCE
chmod +x "$work/once.sh"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; $($bin --version)"
[ -n "$base" ] && echo "baseline: $base ($($base --version))"
echo "time scale: 0; runs: $runs"
echo
python3 - "$runs" "$work" "$bin" "$base" <<'PY'
import statistics, sys
sys.path.insert(0, "scripts")
from bench import once

runs, work, new, base = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
bins = [("this build", new)] + ([("baseline", base)] if base else [])
rows = [(label, b, n) for label, b in bins for n in (100, 1000)]
times = {r: [] for r in rows}
for _ in range(runs):
    for r in rows:
        label, b, n = r
        wall, _ = once([f"{work}/once.sh", b, f"{work}/flat-{n}.yaml"], stderr=None)
        times[r].append(wall)
print("| binary | VMs | runs | median create + destroy | min | per VM (median) |")
print("|---|---|---|---|---|---|")
per = {}
for r in rows:
    label, b, n = r
    med = statistics.median(times[r])
    per[(label, n)] = med / n
    print(f"| {label} | {n} | {len(times[r])} | {med:.2f} s | {min(times[r]):.2f} s | {med / n * 1000:.1f} ms |")
print()
for label, _ in bins:
    print(f"{label}: per VM at 1,000 / per VM at 100 = {per[(label, 1000)] / per[(label, 100)]:.2f}")
PY
