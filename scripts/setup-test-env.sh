#!/usr/bin/env bash
# Prepare a Debian or Ubuntu machine (as root) for imagefactory: a Docker engine, the tools
# the integration tests drive (debootstrap, docker-registry, htpasswd, cosign), the base
# images made locally with debootstrap (Docker Hub may not be reachable), and the Python
# package in a virtual environment at .venv built on the distribution's own Python: stock
# Debian 12/13 and Ubuntu 22.04/24.04 refuse `pip install` into /usr (PEP 668), so nothing
# goes there.
# Idempotent: whatever is already there is kept.
#
# Leaves running: dockerd, when this script had to start it (its pid and how to stop it are
# printed). Nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

# The interpreter the venv is built on: the distribution's, unless told otherwise.
python=${IMAGEFACTORY_PYTHON:-/usr/bin/python3}
venv=${IMAGEFACTORY_VENV:-.venv}

# IMAGEFACTORY_SETUP_VENV_ONLY=1: only the Python part (used by the set-up test, in a
# container without an engine).
venv_only=${IMAGEFACTORY_SETUP_VENV_ONLY:-}

need=()
[ -n "$venv_only" ] || for pair in dockerd:docker.io debootstrap:debootstrap docker-registry:docker-registry \
            htpasswd:apache2-utils socat:socat chromium:chromium; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -x "$python" ] || need+=(python3)
# The GPU code audit's instruction check (`audit --chip`) disassembles with Debian's LLVM:
# llvm-19 (bookworm and sid both carry it) gives llvm-objdump-19 and llvm-mc-19 with the
# AMDGPU target; the newest versioned one found is used.
# (Test tools, like the engine's: not for the venv-only set-up.)
[ -n "$venv_only" ] || command -v llvm-objdump-19 >/dev/null 2>&1 \
    || [ -x /usr/lib/llvm-19/bin/llvm-objdump ] || need+=(llvm-19)
# Debian's PCI ID list: result bundles name the GPU from it (imagefactory/host/facts.py).
[ -n "$venv_only" ] || [ -f /usr/share/misc/pci.ids ] || need+=(pci.ids)
# Debian and Ubuntu ship venv (ensurepip) apart from python3; a venv without it has no pip.
if [ -x "$python" ] && ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi

if [ -z "$venv_only" ] && ! docker info >/dev/null 2>&1; then
    mkdir -p /var/log
    nohup dockerd >/var/log/imagefactory-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/imagefactory-dockerd.log" >&2; exit 1; }
    echo "setup: started dockerd (pid $(cat /var/run/docker.pid 2>/dev/null || echo '?'), log /var/log/imagefactory-dockerd.log); it keeps running: stop it with kill \$(cat /var/run/docker.pid)"
fi

# A Debian package the system's suites lack (bookworm), installed from Debian trixie through a
# private apt state: trixie never enters the system's sources or preferences, so nothing
# else on the machine is upgraded from it. Only for Go binaries that need no more than
# bookworm's libc (dpkg refuses the .deb otherwise).
from_trixie() {  # from_trixie PACKAGE
    echo "setup: installing $1 from Debian trixie"
    local tmp
    tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: trixie' \
        'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
        > "$tmp/trixie.sources"
    local trixie=(-o "Dir::Etc::SourceList=$tmp/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
                  -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
                  -o APT::Sandbox::User=root)
    apt-get "${trixie[@]}" update -qq
    (cd "$tmp" && apt-get "${trixie[@]}" download -qq "$1")
    dpkg -i "$tmp"/"$1"_*.deb >/dev/null
    rm -rf "$tmp"
}
# The system's own package where its suites have one (trixie, sid), else trixie's.
install_or_trixie() {  # install_or_trixie PACKAGE
    if apt-cache show "$1" >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "$1" >/dev/null
    else
        from_trixie "$1"
    fi
}

# BuildKit for `imagefactory build` (--builder auto picks it) and `docker buildx bake`:
# Debian's docker-buildx (trixie and later; bookworm has none) is a docker CLI plugin in
# /usr/libexec/docker/cli-plugins, found by Debian's and Docker's CLIs. It needs only
# libc6 >= 2.34.
if [ -z "$venv_only" ] && ! docker buildx version >/dev/null 2>&1; then
    install_or_trixie docker-buildx
fi

# cosign attaches and verifies signed result bundles (`imagefactory share --attest/--verify`,
# imagefactory/share/attest.py): Debian's package (trixie 2.5, sid 3.x; bookworm has none),
# a static Go binary that needs only libc6 >= 2.34.
if [ -z "$venv_only" ] && ! command -v cosign >/dev/null 2>&1; then
    install_or_trixie cosign
fi

# Base images made with debootstrap when the engine lacks them: the same Dockerfiles pull
# them from Docker Hub elsewhere (a FROM naming a tag present in the engine does not pull).
make_base() {  # make_base SUITE TAG
    docker image inspect "$2" >/dev/null 2>&1 && return 0
    echo "setup: making $2 with debootstrap"
    local rootfs
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase "$1" "$rootfs" http://deb.debian.org/debian >/dev/null
    tar -C "$rootfs" -c . | docker import - "$2" >/dev/null
    rm -rf "$rootfs"
}
if [ -z "$venv_only" ]; then
    make_base bookworm debian:bookworm-slim   # therock
    make_base trixie debian:trixie-slim       # cpu (Debian's torch 2.6)
    make_base sid debian:sid-slim             # debian-rocm, the GPU code audit's fixtures
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv with $python ($("$python" --version 2>&1))"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
# The test suite's recipe families (tiny, mounts) are a plugin distribution of their own
# (the imagefactory.families entry-point group, docs/architecture.md), not part of the
# package. Offline: its build backend is the hatchling the line above installed (no build
# isolation) and its one dependency is imagefactory itself (no resolution). Editable, so an
# edit to a family needs no reinstall; reinstalled every time, like the package.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
    --no-deps --no-index -e tests/fixtures/familyplugin
echo "setup: imagefactory is $venv/bin/imagefactory (or: . $venv/bin/activate)"
