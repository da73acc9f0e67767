#!/usr/bin/env bash
# The main job on a fresh machine: set up (Docker engine, base image, the package), check the
# host, build the variant it recommends (or the one named), test it here with the GPU passed
# through when there is one, and write the compatibility report.
#   bash scripts/main-job.sh [VARIANT] [imagefactory test options, e.g. --quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh
export PATH="$PWD/${IMAGEFACTORY_VENV:-.venv}/bin:$PATH"

results=${IMAGEFACTORY_RESULTS:-results}
# doctor exits 1 when the host is not ready for a GPU; its report still says why and how to
# fix it, and the recommended variant (cpu without an AMD GPU) can still be built and tested.
imagefactory doctor --results "$results" || echo "main-job: doctor found problems (above); going on"

variant=${1:-}
if [ -z "$variant" ]; then
    variant=$(imagefactory doctor --json --results "$results" | python -c \
        'import json, sys; print(json.load(sys.stdin)["recommendations"][0]["variant"])') || true
    variant=${variant:-cpu}
fi
shift || true
echo "main-job: variant $variant"

imagefactory build "$variant" --progress plain
status=0
imagefactory test "$variant" --results "$results" "$@" || status=$?
imagefactory report --results "$results" --out "$results"
echo "main-job: results and COMPATIBILITY.md in $results/ (test exit status $status)"
exit "$status"
