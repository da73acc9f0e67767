#!/bin/sh
# imagefactory entrypoint. Plain `docker run` users most often forget the GPU device flags or
# lack the host's group ids; say so in one line with the exact fix, then run the command
# anyway so CPU work still runs. IMAGEFACTORY_QUIET=1 silences it.
if [ "${IMAGEFACTORY_GPU:-none}" = "rocm" ] && [ -z "${IMAGEFACTORY_QUIET:-}" ]; then
    msg=""
    if [ ! -e /dev/kfd ]; then
        msg="/dev/kfd is missing: run with --device=/dev/kfd --device=/dev/dri"
    elif ! ( : <>/dev/kfd ) 2>/dev/null; then
        msg="/dev/kfd cannot be opened by uid $(id -u): add --group-add $(stat -c %g /dev/kfd)"
    else
        render=""
        for node in /dev/dri/renderD*; do
            [ -e "$node" ] && render="$node" && break
        done
        if [ -z "$render" ]; then
            msg="no /dev/dri/renderD* node: run with --device=/dev/dri (or --device=/dev/dri/renderD128)"
        elif ! ( : <>"$render" ) 2>/dev/null; then
            msg="$render cannot be opened by uid $(id -u): add --group-add $(stat -c %g "$render")"
        fi
    fi
    if [ -n "$msg" ]; then
        echo "imagefactory: GPU not usable, running on CPU only: $msg" >&2
    fi
fi
# `imagefactory run` (and `docker run --user UID:GID`) may run as a uid other than the image's
# 1000, whose home is then / or not its own: give it a writable home, so ~/.cache (pip, torch
# hub, MIOpen's user db) works. Paths the image set under the old home follow it.
if [ ! -w "${HOME:-/}" ] || [ "${HOME:-/}" = / ]; then
    old_home="${HOME:-/}"
    HOME="${TMPDIR:-/tmp}/home-$(id -u)"
    if mkdir -p "$HOME" 2>/dev/null; then
        export HOME
        for var in MIOPEN_USER_DB_PATH MIOPEN_CUSTOM_CACHE_DIR; do
            value="$(printenv "$var" || true)"
            case "$value" in
                /home/torch/*) export "$var=$HOME/${value#/home/torch/}" ;;
            esac
        done
    else
        HOME="$old_home"
    fi
fi
exec "$@"
