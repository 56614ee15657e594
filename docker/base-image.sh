#!/usr/bin/env bash
# Build the local base image (Debian bookworm minbase + Python 3.11) with debootstrap when it is missing:
# no registry is needed. As root.   docker/base-image.sh [IMAGE]   (default hybridmi-base:bookworm)
# Env: DEBIAN_MIRROR (http://deb.debian.org/debian), REBUILD_BASE=1 to rebuild an existing IMAGE.
set -euo pipefail
IMAGE="${1:-hybridmi-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
log() { echo "base-image: $*" >&2; }

if [ "${REBUILD_BASE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE exists; keeping it"; exit 0
fi
[ "$(id -u)" = 0 ] || { log "debootstrap needs root (uid is $(id -u))"; exit 1; }
if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
rootfs="$(mktemp -d /tmp/hybridmi-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
log "debootstrap bookworm from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$rootfs" "$MIRROR" \
    >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
echo "deb $MIRROR bookworm main" >"$rootfs/etc/apt/sources.list"
version="$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$version" = 3.11 ] || { log "the rootfs has Python $version; the project needs 3.11"; exit 1; }
tar -C "$rootfs" -c . | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
log "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE") bytes)"
