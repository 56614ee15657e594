#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`; idempotent.
#
#   scripts/docker-engine.sh            # as root on Debian bookworm (CI)
#
# 1. installs Debian's docker.io with apt-get when `dockerd` is missing,
# 2. starts `dockerd` in the background (log: $DOCKERD_LOG) unless an engine already answers,
# 3. waits up to $DOCKERD_WAIT_S seconds for `docker info`, and exits non-zero with the log's tail
#    when it never answers.
# A second call while the engine runs does nothing and exits 0.
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/hybridmi-dockerd.log}"
DOCKERD_WAIT_S="${DOCKERD_WAIT_S:-60}"

log() { echo "docker-engine: $*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

install_docker() {
    if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        log "dockerd is missing and installing it needs root (uid is $(id -u))"
        exit 1
    fi
    log "installing docker.io with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
}

# The pid of a live dockerd from its pid file, or nothing (procps may be missing on a bare machine).
running_dockerd_pid() {
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q dockerd "/proc/$pid/comm" 2>/dev/null; then
        echo "$pid"
    fi
}

start_dockerd() {
    local pid
    pid="$(running_dockerd_pid)"
    if [ -n "$pid" ]; then
        log "dockerd already running (pid $pid); waiting for it"
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        log "no Docker engine answers and starting dockerd needs root (uid is $(id -u))"
        exit 1
    fi
    log "starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid: the daemon outlives this script and the CI step that called it.
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
}

wait_for_engine() {
    local waited=0
    until engine_answers; do
        if [ "$waited" -ge "$DOCKERD_WAIT_S" ]; then
            log "no answer from \`docker info\` after ${DOCKERD_WAIT_S}s; last lines of $DOCKERD_LOG:"
            tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

main() {
    if command -v docker >/dev/null 2>&1 && engine_answers; then
        log "engine already answers"
        return
    fi
    install_docker
    start_dockerd
    wait_for_engine
    log "engine answers: server $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
}

main "$@"
