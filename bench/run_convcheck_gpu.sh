#!/usr/bin/env bash
# Run the in-image conv check on a machine with a CUDA/ROCm torch and no Docker: the full
# case list, then its Conv2d cases under the im2col profile. JSON per run goes to $1
# (default bench/results); exit 0 iff both runs were all ok.
#   bench/run_convcheck_gpu.sh [OUTDIR]
# Env: DEVICE (default cuda; cpu works for a dry run), TIMEOUT (per case, default 120),
#      PROFILES (space-separated, default "none im2col"; "none" = no profile),
#      ISOLATIONS (space-separated, default "fork"; "fork spawn" times both, one after the
#      other, per profile),
#      CONVCHECK_ARGS (extra arguments, e.g. "--quick" or "--cases 'conv2d-*'").
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results}
device=${DEVICE:-cuda}
timeout=${TIMEOUT:-120}
mkdir -p "$out"
export PYTHONPATH="$PWD/dockerfiles/files/python${PYTHONPATH:+:$PYTHONPATH}"
python3 -c 'import os, sys, time; t = time.time(); import torch
print("import torch %.2f s, %d threads after it, cuda initialised: %s" % (time.time() - t,
      len(os.listdir("/proc/self/task")), torch.cuda.is_initialized()))
print("torch", torch.__version__, "hip", torch.version.hip,
      "cuda", torch.version.cuda, "available", torch.cuda.is_available()); sys.stdout.flush()'

status=0
for profile in ${PROFILES:-none im2col}; do
  for isolation in ${ISOLATIONS:-fork}; do
    name="convcheck-${device}-${profile}-${isolation}"
    args=(--device "$device" --timeout "$timeout" --isolation "$isolation"
          --json "$out/$name.json")
    [ "$profile" != none ] && args+=(--profile "$profile")
    # The fallback only replaces Conv2d: the other cases would repeat the plain run.
    [ "$profile" = im2col ] && [ -z "${CONVCHECK_ARGS:-}" ] && args+=(--cases 'conv2d-*')
    echo "== $name"
    start=$(date +%s)
    # shellcheck disable=SC2086  # CONVCHECK_ARGS is meant to split into arguments
    eval python3 -m convcheck '"${args[@]}"' ${CONVCHECK_ARGS:-} | tee "$out/$name.txt"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc in $(( $(date +%s) - start )) s"
    [ "$rc" -eq 0 ] || status=1
  done
done
exit "$status"
