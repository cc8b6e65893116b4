#!/usr/bin/env bash
# Compatibility shim for the original iac-driver's ./run.sh: existing CI that calls
#   ./run.sh create -M n2-quick -H father
# keeps working. Arguments are passed to `driver` unchanged.
#
# Which driver runs: $DRIVER if set, else a binary built in this checkout
# (target/release, then target/debug), else `driver` on PATH, else `cargo run --release`.
set -euo pipefail
here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"

case "${1:-}" in
  --scenario|-S|--list-scenarios)
    echo "run.sh: scenarios are not part of driver; use the verbs: create, destroy, test (driver --help)" >&2
    exit 2 ;;
esac

if [[ -n "${DRIVER:-}" ]]; then
  exec "$DRIVER" "$@"
fi
for b in "$here/target/release/driver" "$here/target/debug/driver"; do
  if [[ -x "$b" ]]; then exec "$b" "$@"; fi
done
if command -v driver >/dev/null 2>&1; then
  exec driver "$@"
fi
exec cargo run --quiet --release --manifest-path "$here/Cargo.toml" -- "$@"
