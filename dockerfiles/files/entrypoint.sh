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
exec "$@"
