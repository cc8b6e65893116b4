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

if ! command -v git >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git
  else
    say "git is missing: sudo apt-get install git"; exit 1
  fi
fi
# Python tools in a venv at the repo root: fakepve (an independent fake of the PVE API).
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import fakepve, cryptography' 2>/dev/null; then
  say "installing fakepve into .venv"
  .venv/bin/pip install -q 'fakepve[crypto]'
fi
say "ok"
