#!/usr/bin/env bash
# The tests: installs what the build needs (scripts/deps.sh), then runs
# `cargo test --workspace`, passing any arguments on. Finds or starts a
# PostgreSQL as the README says (AEPG_TEST_* environment variables).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec cargo test --workspace "$@"
