#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test
# of the workspace with cargo-nextest. Extra arguments go to nextest
# (e.g. scripts/test.sh -E 'test(validate)').
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
exec cargo nextest run --workspace "$@"
