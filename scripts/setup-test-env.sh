#!/usr/bin/env bash
# Prepare a Debian machine for imagefactory's tests: a Docker engine, the tools the
# integration tests drive (debootstrap, docker-registry, htpasswd), the debian:bookworm-slim
# base image (made locally: Docker Hub is not reachable), and the Python package.
# Idempotent: whatever is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in dockerd:docker.io debootstrap:debootstrap docker-registry:docker-registry \
            htpasswd:apache2-utils; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    echo "setup: starting dockerd"
    mkdir -p /var/log
    nohup dockerd >/var/log/imagefactory-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/imagefactory-dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    echo "setup: making debian:bookworm-slim with debootstrap"
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
    rm -rf "$rootfs"
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
