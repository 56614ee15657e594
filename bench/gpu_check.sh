#!/usr/bin/env bash
# The one script to run when a GPU machine is available (bench/README.md has the exact `run` tool call).
#
#   bash bench/gpu_check.sh --prepare            here, once: wheels the device lacks -> .whl/, CIFAR-10 archive -> .gpucheck/
#   bash bench/gpu_check.sh --out DIR [ARGS]     on the device: install .whl/ into /tmp/site, run bench/gpu_check.py
#   bash bench/gpu_check.sh --dry-run --out DIR  here or in CI: the same entry point on the CPU (smoke preset), in a
#                                                venv holding only the device's packages plus the carried ones
# ARGS go to bench/gpu_check.py (--train-minutes, --samples, --set a.b=v, ...). The device has Python 3.12 and
# torch 2.11 but no pydantic, kfp, minio or pytorch-fid; pydantic travels as py3.12 wheels (64 MiB in all travels).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0)
mode=device
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) mode=prepare ;;
    --dry-run) mode=dry; args+=(--dry-run) ;;
    *) args+=("$1") ;;
  esac
  shift
done

case "$mode" in
  prepare)
    rm -rf .whl && mkdir -p .whl .gpucheck
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "${WHEELS[@]}"
    cp ../shared/data/cifar10-jpeg.tar.gz .gpucheck/
    du -sh .whl .gpucheck
    ;;
  dry)
    venv="${HYBRIDMI_DEVICE_VENV:-${TMPDIR:-/tmp}/hybridmi-device-venv}"
    python="$(.venv/bin/python bench/device_venv.py "$venv")"
    PYTHONPATH="$PWD" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$python" bench/gpu_check.py "${args[@]}"
    ;;
  device)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    out=""
    for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[i]}" = --out ] && out="${args[i + 1]}"; done
    mkdir -p "${out:?--out DIR is required}"
    set -o pipefail
    PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 python3 bench/gpu_check.py "${args[@]}" 2>&1 | tee "$out/gpu_check.log"
    ;;
esac
