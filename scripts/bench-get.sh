#!/usr/bin/env bash
# `driver get vms` on a simulated host holding 1,000 guests, against `curl` of the API calls
# it makes (GET /nodes/NODE/qemu and /nodes/NODE/lxc, one curl run, one connection), in the
# same run, interleaved (A B A B ...); medians and peak RSS reported (scripts/bench.py).
# The 1,000 VMs are made by `driver create` of `scripts/gen-manifest.py flat 1000` (time scale
# 0); the simulator is then kept serving (a shared lock on its clients.lock, as a run holds)
# so that neither side pays for starting it.
# usage: scripts/bench-get.sh [RUNS] [FORMAT]
#   RUNS    runs of each (default 20)
#   FORMAT  get's -o: table (default), wide, json, yaml
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
format="${2:-table}"
command -v curl >/dev/null || { echo "curl is needed: apt-get install curl" >&2; exit 1; }
command -v flock >/dev/null || { echo "flock is needed: apt-get install util-linux" >&2; exit 1; }
cargo build --release --quiet -p driver
bin="$PWD/target/release/driver"
work="$(mktemp -d)"
holder=""
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  # The simulator stops once no client holds its folder: wait for it (up to 30 s) before
  # its folder goes, then end it if it did not.
  local pid
  pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \
    "$work/state/pvesim-sim/pvesim.json" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export PVESIM_TIME_SCALE=0 DRIVER_STATE_DIR="$work/state"
unset HOMESTAK_SITE_CONFIG PVESIM_FAULTS
python3 scripts/gen-manifest.py flat 1000 "$work/flat.yaml"
"$bin" create --manifest-file "$work/flat.yaml" -H sim >/dev/null 2>"$work/create.err" \
  || { cat "$work/create.err" >&2; exit 1; }
sim="$DRIVER_STATE_DIR/pvesim-sim"
flock -s "$sim/clients.lock" sleep 100000 &
holder=$!
# The first get starts the simulator (the holder keeps it serving afterwards).
n=$("$bin" get vms -H sim -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$sim/pvesim.json")
node=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node"])' "$sim/pvesim.json")
auth="Authorization: PVEAPIToken=$(cat "$sim/pvesim.token")"
bytes=$(curl -sk -H "$auth" "$url/api2/json/nodes/$node/qemu" "$url/api2/json/nodes/$node/lxc" | wc -c)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; $($bin --version)"
echo "rows of get vms: $n (1,000 VMs and the templates they were cloned from); API answers: $bytes bytes; runs: $runs"
echo "driver: $bin get vms -H sim -o $format"
echo "curl:   curl -sk -H 'Authorization: PVEAPIToken=…' $url/api2/json/nodes/$node/qemu $url/api2/json/nodes/$node/lxc"
echo
echo "| command | runs | median | min | peak RSS (median) | ratio to curl |"
echo "|---|---|---|---|---|---|"
python3 scripts/bench.py "$runs" \
  "driver get vms -o $format" -- "$bin" get vms -H sim -o "$format" --- \
  "curl (same 2 calls)" -- curl -sk -o /dev/null -o /dev/null -H "$auth" \
    "$url/api2/json/nodes/$node/qemu" "$url/api2/json/nodes/$node/lxc"
