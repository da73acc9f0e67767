#!/usr/bin/env bash
# The test command the README gives and CI runs: set up, then every test (unit + integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh
venv=${IMAGEFACTORY_VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH"
ruff check .
exec python -m pytest -q "$@"
