#!/usr/bin/env bash
# Installs what the test suite needs; safe to run again (skips what is there).
# Root installs system packages with apt; a non-root user is told the command.
#
# - cargo-nextest: the test runner.
# - git.
# - openssh-server / openssh-client: the SSH and ansible tests start a real
#   sshd on a loopback address; ansible talks to it with the ssh client.
# - libssl-dev, pkg-config, a C compiler: the ssh2 crate builds libssh2
#   from source against the system OpenSSL.
# - .venv (python venv at the repo root) with ansible-core, for the ansible
#   tests (they look for .venv/bin/ansible-playbook, then PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install-test-deps: $*" >&2; }

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest (cargo install cargo-nextest --locked)"
  cargo install cargo-nextest --locked
fi

# Debian packages: name of the package, and how to tell it is there.
missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
pkg-config --exists zlib 2>/dev/null || missing+=(zlib1g-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "missing: sudo apt-get install ${missing[*]}"; exit 1
  fi
fi

# ansible-core in a venv of our own (never the system's pip).
if [[ ! -x .venv/bin/ansible-playbook ]]; then
  say "creating .venv with ansible-core (python3 -m venv .venv && .venv/bin/pip install ansible-core)"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check ansible-core
fi
say "ok"
