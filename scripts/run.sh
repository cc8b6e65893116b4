#!/usr/bin/env bash
# Compatibility shim for the original iac-driver's ./run.sh: CI written against either
# generation of its command line keeps working. It only translates arguments; what
# they do is driver's (scenarios are `driver scenario run`, see src/commands/scenario.rs).
#
#   seed form                               driver
#   ./run.sh create|destroy|test ...        driver create|destroy|test ...   (unchanged)
#   ./run.sh serve ...                      driver serve ...                 (unchanged)
#   ./run.sh --scenario NAME ... / -S NAME  driver scenario run NAME ...
#   ./run.sh --list-scenarios               driver scenario list
#   ./run.sh --preflight --host H|--local   driver preflight -H H|$(hostname -s)
#   later noun-verb form
#   ./run.sh manifest apply|destroy|test|validate ...   driver create|destroy|test|validate ...
#   ./run.sh config fetch|apply ...         driver config fetch|apply ...    (unchanged)
#   ./run.sh server start [--foreground] .. driver serve ...
#   ./run.sh scenario run NAME ...          driver scenario run NAME ...     (unchanged)
#   ./run.sh scenario NAME ...              driver scenario run NAME ...
#
# RUN_SH_ECHO=1 prints the driver command line (one argument per line) instead of running it.
# Which driver runs: $DRIVER if set, else a binary built in this checkout
# (the newer of target/release and target/debug), else `driver` on PATH, else `cargo run --release`.
set -euo pipefail
here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"

die() { echo "run.sh: $*" >&2; exit 2; }

args=("$@")
case "${1:-}" in
  manifest)
    case "${2:-}" in
      apply) args=(create "${@:3}") ;;
      destroy|test|validate) args=("$2" "${@:3}") ;;
      *) die "manifest ${2:-}: expected apply, destroy, test or validate" ;;
    esac ;;
  server)
    case "${2:-}" in
      start)
        # driver serve stays in the foreground (run it under systemd or `&` to detach).
        args=(serve)
        for a in "${@:3}"; do [[ "$a" == --foreground ]] || args+=("$a"); done ;;
      stop|status)
        die "server $2: driver serve runs in the foreground; stop it with SIGTERM (kill PID, or systemctl stop on its unit), and check it with curl -k https://HOST:PORT/health" ;;
      *) die "server ${2:-}: expected start" ;;
    esac ;;
  scenario)
    case "${2:-}" in
      run|list) ;;
      ""|--help|-h) args=(scenario list) ;;
      *) args=(scenario run "${@:2}") ;;
    esac ;;
  *)
    # The seed's flag form: --scenario/-S and --list-scenarios/--preflight anywhere.
    scenario="" list=0 preflight=0 local=0 rest=()
    while (($#)); do
      case "$1" in
        --scenario|-S) (($# >= 2)) || die "$1 needs a scenario name"; scenario="$2"; shift 2 ;;
        --scenario=*) scenario="${1#*=}"; shift ;;
        --list-scenarios) list=1; shift ;;
        --preflight) preflight=1; shift ;;
        --local) local=1; rest+=("$1"); shift ;;
        *) rest+=("$1"); shift ;;
      esac
    done
    if ((list)); then
      args=(scenario list)
    elif ((preflight)); then
      args=(preflight)
      for a in "${rest[@]}"; do
        case "$a" in --host) args+=(-H) ;; --local) args+=(-H "$(hostname -s)") ;; *) args+=("$a") ;; esac
      done
    elif [[ -n "$scenario" ]]; then
      args=(scenario run "$scenario" "${rest[@]}")
    fi ;;
esac

if [[ "${RUN_SH_ECHO:-}" == 1 ]]; then
  printf '%s\n' "${args[@]}"
  exit 0
fi
if [[ -n "${DRIVER:-}" ]]; then
  exec "$DRIVER" "${args[@]}"
fi
# The newer of the two builds: an old release binary must not shadow a fresh debug one.
rel="$here/target/release/driver" dbg="$here/target/debug/driver"
if [[ -x "$rel" && -x "$dbg" ]]; then
  if [[ "$dbg" -nt "$rel" ]]; then exec "$dbg" "${args[@]}"; else exec "$rel" "${args[@]}"; fi
fi
for b in "$rel" "$dbg"; do
  if [[ -x "$b" ]]; then exec "$b" "${args[@]}"; fi
done
if command -v driver >/dev/null 2>&1; then
  exec driver "${args[@]}"
fi
exec cargo run --quiet --release --manifest-path "$here/Cargo.toml" -- "${args[@]}"
