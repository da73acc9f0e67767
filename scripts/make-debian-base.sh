#!/usr/bin/env bash
# Make a Debian base image locally with debootstrap (Docker Hub is not reachable from CI or
# the test machines): `make-debian-base.sh SUITE [TAG]` -> debian:SUITE-slim by default.
# The tag matches Docker Hub's official name, so a Dockerfile that says `FROM debian:sid-slim`
# builds unchanged here (the engine does not pull a tag it already has) and for users.
# Idempotent: an existing image is kept. MIRROR overrides the archive.
set -euo pipefail
suite=${1:?usage: make-debian-base.sh SUITE [TAG]}
tag=${2:-debian:${suite}-slim}
mirror=${MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi
echo "make-debian-base: making $tag with debootstrap ($suite from $mirror)"
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/dev/null
# Leave no package lists or caches in the layer, as the official slim images do.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
tar -C "$rootfs" -c . | docker import - "$tag" >/dev/null
echo "make-debian-base: $tag ready"
