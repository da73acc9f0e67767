#!/usr/bin/env bash
# The test command the README gives and CI runs: set up, then every test (unit + integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh
ruff check .
exec python3 -m pytest -q "$@"
