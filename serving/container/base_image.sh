#!/usr/bin/env bash
# A Debian base image built locally, for machines that reach package registries but no image registry:
# debootstrap (bookworm, minbase + Python 3.11 and venv) → `docker import`. The Dockerfile takes it as
# `--build-arg BASE_IMAGE=bilstm-base:bookworm` (its default, python:3.11-slim, needs Docker Hub).
#
#   sudo bash serving/container/base_image.sh [TAG]          # default tag: bilstm-base:bookworm
set -euo pipefail
TAG=${1:-bilstm-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG exists (docker rmi $TAG to rebuild)"; exit 0
fi
command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install debootstrap" >&2; exit 2; }
ROOTFS=$(mktemp -d /tmp/bilstm-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR" >/dev/null
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
# CMD/ENV as the python images have them: the Dockerfile relies on nothing else
tar -C "$ROOTFS" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "built $TAG ($(docker image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'))"
