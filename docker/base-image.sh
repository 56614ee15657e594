#!/usr/bin/env bash
# Build the local base image hybridmi-base:bookworm (Debian bookworm minbase + Python 3.11) when missing.
#
#   docker/base-image.sh [IMAGE]          # default IMAGE: hybridmi-base:bookworm; run as root
#
# No registry can be reached on the machines this project is built on, so the base is made from
# Debian's mirror with debootstrap and loaded with `docker import`. Cached: an existing IMAGE is kept.
# Env: DEBIAN_MIRROR (default http://deb.debian.org/debian), REBUILD_BASE=1 to rebuild anyway.
set -euo pipefail

IMAGE="${1:-hybridmi-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,python3-pip,ca-certificates"

log() { echo "base-image: $*" >&2; }

if [ "${REBUILD_BASE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE exists; keeping it"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "debootstrap needs root (uid is $(id -u))"
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

rootfs="$(mktemp -d /tmp/hybridmi-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

log "debootstrap bookworm from $MIRROR (packages: $PACKAGES)"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    rm -f "$rootfs.log"
    exit 1
}
rm -f "$rootfs.log"

# Downloaded .debs and package lists are not needed in the image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
echo "deb $MIRROR bookworm main" >"$rootfs/etc/apt/sources.list"

python_version="$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$python_version" != 3.11 ]; then
    log "the rootfs has Python $python_version; the project needs 3.11"
    exit 1
fi

log "importing $IMAGE"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE" >/dev/null
log "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE") bytes)"
