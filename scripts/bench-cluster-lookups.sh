#!/usr/bin/env bash
# API requests of `driver test -M n3-cluster -H sim-cluster` (3 VMs on the built-in 3-node
# simulated cluster, time scale 0): how many `GET /cluster/resources` (where is each
# guest), how many calls to guests (`.../qemu/...`), and all requests, as the simulator
# counts them (its log at stop, `RUST_LOG=info`). Runs BASELINE and CANDIDATE (two driver
# binaries) interleaved and prints markdown rows with medians.
# usage: scripts/bench-cluster-lookups.sh BASELINE_BIN CANDIDATE_BIN [RUNS]   (default 5)
set -euo pipefail
base="$(realpath "$1")"
cand="$(realpath "$2")"
runs="${3:-5}"
counts() {
  local state
  state="$(mktemp -d)"
  (cd "$state" && RUST_LOG=info DRIVER_STATE_DIR="$state" PVESIM_TIME_SCALE=0 \
    "$1" test -M n3-cluster -H sim-cluster --json-output >"$state/out.json" 2>/dev/null) || true
  python3 - "$state" <<'PY'
import json, re, sys
d = sys.argv[1]
if not json.load(open(d + "/out.json")).get("success"):
    sys.exit("the run failed: " + d)
log = open(d + "/pvesim-sim-cluster/pvesim.log").read()
r = json.loads(re.findall(r"API requests served: (\{.*\})", log)[-1])
print(r.get("GET /cluster/resources", 0),
      sum(v for k, v in r.items() if "/qemu/" in k),
      sum(r.values()))
PY
  rm -rf "$state"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for i in $(seq "$runs"); do
  echo "baseline $(counts "$base")"
  echo "candidate $(counts "$cand")"
done | python3 -c '
import statistics, sys
rows = {"baseline": [], "candidate": []}
for line in sys.stdin:
    name, *n = line.split()
    rows[name].append([int(x) for x in n])
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
print("| driver | runs | GET /cluster/resources (median) | guest calls | all requests | /cluster/resources ratio to baseline |")
print("|---|---|---|---|---|---|")
base = med["baseline"][0]
for k in ("candidate", "baseline"):
    m = med[k]
    print(f"| {k} | {len(rows[k])} | {m[0]:g} | {m[1]:g} | {m[2]:g} | {m[0] / base:.3f} |")
'
