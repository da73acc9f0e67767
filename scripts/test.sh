#!/usr/bin/env bash
# The test command the README gives and CI runs: set up, then every test (unit + integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh
venv=${IMAGEFACTORY_VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH"
# tests/scripts/test_setup.py checks the suite runs from the venv the set-up made
export IMAGEFACTORY_SUITE_VENV="$PWD/$venv"
# The set-up above made the engine, socat and buildx: a test missing them now fails instead of
# skipping (tests/needs.py).
export IMAGEFACTORY_REQUIRE_DOCKER=1
ruff check .
mypy --strict imagefactory
# The in-image conv check (stdlib + torch; Python 3.8 .. 3.12 in the images) as a package of
# its own, at the oldest Python mypy 2.x accepts for --python-version (3.10; py38 syntax is
# ruff's job: dockerfiles/files/python/ruff.toml). torch is Any ([tool.mypy] overrides).
mypy --strict --python-version 3.10 dockerfiles/files/python/convcheck \
    dockerfiles/files/python/im2col_fallback.py
# The workflows: actions pinned by commit, no persisted credentials, least permissions.
zizmor --offline .github
# the layer rules of pyproject.toml [tool.importlinter] (#26)
lint-imports --no-cache
exec python -m pytest -q "$@"
