#!/usr/bin/env bash
# The test command the README gives and CI runs: set up, then every test (unit + integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh
venv=${IMAGEFACTORY_VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH"
# The set-up above made the engine, socat and buildx: a test missing them now fails instead of
# skipping (tests/needs.py).
export IMAGEFACTORY_REQUIRE_DOCKER=1
ruff check .
mypy --strict imagefactory
# the layer rules of pyproject.toml [tool.importlinter] (#26)
lint-imports --no-cache
exec python -m pytest -q "$@"
