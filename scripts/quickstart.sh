#!/usr/bin/env bash
# The main demo: installs what the build needs (scripts/deps.sh), then runs
# the quickstart example (DATABASE_URL if set, else a throwaway PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec cargo run --example quickstart "$@"
