#!/usr/bin/env bash
# Benchmark of `driver images ensure` of a 2-part release image on the bare simulator
# (`simulated: bare`): the driver downloads both parts from a local HTTP server, checks
# them against the release's SHA256SUMS, joins them, uploads the image to the simulator
# (multipart, streamed), which imports it into a VM made a template; against a plain
# `curl` download of the same two parts from the same server, in the same run.
# Each ensure starts from nothing (fresh state: no cache, no template, a new simulator).
# usage: scripts/bench-images.sh [RUNS] [PART_MB]   (default 5 runs, 256 MiB per part)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
PART_MB=${2:-256}
command -v curl >/dev/null || { echo "needs curl: apt-get install curl" >&2; exit 1; }
command -v python3 >/dev/null || { echo "needs python3: apt-get install python3" >&2; exit 1; }
cargo build --quiet --release -p driver
DRIVER=$PWD/target/release/driver
WORK=$(mktemp -d)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# The release: two parts, their checksums, a GitHub-shaped listing.
mkdir -p "$WORK/www/dl" "$WORK/www/repos/bench/packer/releases/tags"
head -c $((PART_MB << 20)) /dev/urandom > "$WORK/www/dl/bench.qcow2.partaa"
head -c $((PART_MB << 20)) /dev/urandom > "$WORK/www/dl/bench.qcow2.partab"
(cd "$WORK/www/dl" && sha256sum bench.qcow2.partaa bench.qcow2.partab > SHA256SUMS \
  && cat bench.qcow2.partaa bench.qcow2.partab | sha256sum | sed 's/-$/bench.qcow2/' >> SHA256SUMS)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
size() { stat -c %s "$1"; }
cat > "$WORK/www/repos/bench/packer/releases/tags/v1" <<JSON
{"tag_name": "v1", "assets": [
 {"name": "bench.qcow2.partaa", "size": $(size "$WORK/www/dl/bench.qcow2.partaa"), "browser_download_url": "$BASE/dl/bench.qcow2.partaa"},
 {"name": "bench.qcow2.partab", "size": $(size "$WORK/www/dl/bench.qcow2.partab"), "browser_download_url": "$BASE/dl/bench.qcow2.partab"},
 {"name": "SHA256SUMS", "size": $(size "$WORK/www/dl/SHA256SUMS"), "browser_download_url": "$BASE/dl/SHA256SUMS"}]}
JSON
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$WORK/www" >/dev/null 2>&1 &
SERVER_PID=$!
until curl -fs "$BASE/dl/SHA256SUMS" >/dev/null; do sleep 0.1; done

# The example site-config, with the bench image.
cp -r site-config-example "$WORK/site"
printf 'file: bench.qcow2\nrelease: v1\nrepo: bench/packer\napi_base: %s\n' "$BASE" > "$WORK/site/images/bench.yaml"
export HOMESTAK_SITE_CONFIG=$WORK/site SOPS_AGE_KEY_FILE=$WORK/site/age-test-key.txt

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ensure_t=(); curl_t=()
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/state" "$WORK/curl"; mkdir -p "$WORK/state" "$WORK/curl"
  t0=$(now)
  curl -fsS -o "$WORK/curl/a" "$BASE/dl/bench.qcow2.partaa"
  curl -fsS -o "$WORK/curl/b" "$BASE/dl/bench.qcow2.partab"
  t1=$(now)
  DRIVER_STATE_DIR=$WORK/state "$DRIVER" images ensure -H sim-bare bench --json-output >/dev/null
  t2=$(now)
  curl_t+=("$(echo "$t1 - $t0" | bc)"); ensure_t+=("$(echo "$t2 - $t1" | bc)")
done
E=$(printf '%s\n' "${ensure_t[@]}" | median)
C=$(printf '%s\n' "${curl_t[@]}" | median)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
echo "image: 2 parts x ${PART_MB} MiB; runs: $RUNS"
echo "curl of both parts:      median ${C} s  (runs: ${curl_t[*]})"
echo "driver images ensure:    median ${E} s  (runs: ${ensure_t[*]})"
echo "ratio ensure / curl:     $(echo "scale=2; $E / $C" | bc)"
