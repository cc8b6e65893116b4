#!/usr/bin/env bash
# Benchmark: load + validate + plan of generated manifests (1k, 10k, 100k nodes;
# wide and deep), and process start-up. Prints markdown rows for BENCHMARKS.md.
#
# Baselines, measured in the same run:
#  - PyYAML `yaml.safe_load` of the same file: only the first step of the
#    original Python driver's manifest loading (it then validates and sorts).
#  - `python3 -c pass` and `/bin/true` for start-up.
#
# usage: scripts/bench-plan.sh [RUNS]   (default 5; the 100k PyYAML baseline runs twice)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
out=bench-out
mkdir -p "$out"
cargo build --release --quiet
bin=target/release/driver
python3 -c 'import yaml' 2>/dev/null || { echo "PyYAML missing: pip install pyyaml" >&2; exit 1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "driver: $($bin --version)"
echo
echo "| command | runs | median | min | peak RSS (median) | ratio to the group's baseline (last row) |"
echo "|---|---|---|---|---|---|"
for shape in wide deep; do
  for n in 1000 10000 100000; do
    f="$out/$shape-$n.yaml"
    [[ -f $f ]] || python3 scripts/gen-manifest.py "$shape" "$n" "$f"
    pyruns=$runs
    [[ $n -ge 100000 ]] && pyruns=2
    python3 scripts/bench.py "$runs" \
      "driver validate $shape $n" -- "$bin" validate "$f" --- \
      "driver create --dry-run $shape $n (plan rendered as text)" -- "$bin" create --manifest-file "$f" -H sim --dry-run --- \
      "PyYAML safe_load $shape $n (baseline)@$pyruns" -- python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f"
  done
done
python3 scripts/bench.py 50 \
  "/bin/true (floor)" -- /bin/true --- \
  "driver --version" -- "$bin" --version --- \
  "python3 -c pass (baseline)" -- python3 -c pass
