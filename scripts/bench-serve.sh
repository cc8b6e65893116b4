#!/usr/bin/env bash
# Load on `driver serve` over loopback (release build): C concurrent keep-alive TLS
# connections (controller/examples/load.rs, the fingerprint pinned) for SECS seconds per
# load, interleaved over ROUNDS rounds:
#   /health            the floor (no site-config work, no auth)
#   /spec/open         a resolved spec, posture network (no token)
#   /spec/web1         a resolved spec, posture node_token (bearer checked in constant time)
# Memory: the daemon's VmRSS before the first load and after the last, and its VmHWM.
# Prints markdown rows for BENCHMARKS.md (medians over the rounds).
# usage: scripts/bench-serve.sh [ROUNDS] [SECS] [C]   (default 5 5 64)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"; secs="${2:-5}"; conc="${3:-64}"
cargo build --release --quiet -p driver
cargo build --release --quiet -p controller --example load
bin="$PWD/target/release/driver"; load="$PWD/target/release/examples/load"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
site="$work/site"; mkdir -p "$site/postures" "$site/specs"
printf 'defaults: {timezone: UTC, packages: [htop, curl]}\n' > "$site/site.yaml"
printf 'auth: {method: network}\n' > "$site/postures/dev.yaml"
printf 'auth: {method: node_token}\n' > "$site/postures/prod.yaml"
printf 'schema_version: 1\naccess: {posture: dev, users: [{name: ops, sudo: true}]}\nplatform: {packages: [nginx]}\n' > "$site/specs/open.yaml"
printf 'schema_version: 1\naccess: {posture: prod}\nplatform: {packages: [postgresql]}\n' > "$site/specs/locked.yaml"
printf 'ssh_keys: {ops: ssh-ed25519 AAAAbench ops@bench}\nauth: {node_tokens: {web1: bench-token-web1}}\n' > "$site/secrets.yaml"

HOMESTAK_SITE_CONFIG="$site" "$bin" serve --bind 127.0.0.1 --port 0 --node web1=locked --json-output \
  > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 600); do [ -s "$work/out" ] && break; sleep 0.05; done
read -r url fp < <(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["url"], d["fingerprint"])' "$work/out")
rss() { awk -v k="$1:" '$1==k {print $2}' "/proc/$pid/status"; }
rss_before=$(rss VmRSS)

for r in $(seq "$rounds"); do
  "$load" "$url" /health "$fp" "$conc" "$secs" >> "$work/health"
  "$load" "$url" /spec/open "$fp" "$conc" "$secs" >> "$work/open"
  "$load" "$url" /spec/web1 "$fp" "$conc" "$secs" bench-token-web1 >> "$work/web1"
done
rss_after=$(rss VmRSS); hwm=$(rss VmHWM)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $($bin --version)"
echo "load: $conc connections, ${secs} s per load, $rounds rounds interleaved; client and daemon on the same machine"
echo
echo "| endpoint | req/s (median) | p50 ms (median) | p99 ms (median) | errors (total) | ratio of req/s to /health |"
echo "|---|---|---|---|---|---|"
python3 - "$work" <<'PY'
import json, statistics, sys, pathlib
w = pathlib.Path(sys.argv[1])
rows = {n: [json.loads(l) for l in (w / n).read_text().splitlines()] for n in ("health", "open", "web1")}
med = lambda n, k: statistics.median(r[k] for r in rows[n])
floor = med("health", "rps")
for n, label in (("health", "/health (floor)"), ("open", "/spec/open (network)"), ("web1", "/spec/web1 (node_token)")):
    print(f"| {label} | {med(n,'rps'):.0f} | {med(n,'p50_ms'):.2f} | {med(n,'p99_ms'):.2f} | {sum(r['errors'] for r in rows[n])} | {med(n,'rps')/floor:.2f} |")
PY
echo
echo "daemon memory: VmRSS ${rss_before} kB before the first load, ${rss_after} kB after the last; peak (VmHWM) ${hwm} kB"
