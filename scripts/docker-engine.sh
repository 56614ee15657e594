#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info` (idempotent): install Debian's docker.io when dockerd is
# missing, start dockerd in the background (log: $DOCKERD_LOG) and wait up to $DOCKERD_WAIT_S seconds.
set -euo pipefail
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/hybridmi-dockerd.log}"
DOCKERD_WAIT_S="${DOCKERD_WAIT_S:-60}"
log() { echo "docker-engine: $*" >&2; }
needs_root() { [ "$(id -u)" = 0 ] || { log "$1 needs root (uid is $(id -u))"; exit 1; }; }

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    log "engine already answers"; exit 0
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    needs_root "installing docker.io"
    log "installing docker.io with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
fi
pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
if [ -n "$pid" ] && grep -q dockerd "/proc/$pid/comm" 2>/dev/null; then
    log "dockerd already running (pid $pid); waiting for it"
else
    needs_root "starting dockerd"
    log "starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &  # setsid: it outlives this script and its caller
fi
for ((waited = 0; ; waited++)); do
    docker info >/dev/null 2>&1 && break
    if [ "$waited" -ge "$DOCKERD_WAIT_S" ]; then
        log "no answer from \`docker info\` after ${DOCKERD_WAIT_S}s; last lines of $DOCKERD_LOG:"
        tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 1
done
log "engine answers: server $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
