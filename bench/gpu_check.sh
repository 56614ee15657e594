#!/usr/bin/env bash
# The GPU check (bench/README.md). ARGS go to bench/gpu_check.py (--train-minutes, --samples, --set a.b=v, ...).
#
#   bash bench/gpu_check.sh --prepare            once, beside the checkout: wheels the GPU machine lacks -> .whl/,
#                                                the CIFAR-10 JPEG archive -> .gpucheck/ (both git-ignored)
#   bash bench/gpu_check.sh --out DIR [ARGS]     on the GPU machine (Python 3.12, torch, no pydantic): install .whl/
#                                                into /tmp/site, run gpu_check.py, log to DIR/gpu_check.log
#   bash bench/gpu_check.sh --dry-run --out DIR  on the CPU (smoke preset), in a venv of only the device's packages
set -euo pipefail
cd "$(dirname "$0")/.."
mode=device args=()
for arg in "$@"; do
  case "$arg" in
    --prepare) mode=prepare ;;
    --dry-run) mode=dry; args+=(--dry-run) ;;
    *) args+=("$arg") ;;
  esac
done
case "$mode" in
  prepare)
    rm -rf .whl && mkdir -p .whl .gpucheck
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
      pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
    cp ../shared/data/cifar10-jpeg.tar.gz .gpucheck/
    du -sh .whl .gpucheck ;;
  dry)
    python="$(.venv/bin/python bench/device_venv.py "${HYBRIDMI_DEVICE_VENV:-${TMPDIR:-/tmp}/hybridmi-device-venv}")"
    PYTHONPATH="$PWD" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$python" bench/gpu_check.py "${args[@]}" ;;
  device)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    out=""
    for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[i]}" = --out ] && out="${args[i + 1]}"; done
    mkdir -p "${out:?--out DIR is required}"
    PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 python3 bench/gpu_check.py "${args[@]}" 2>&1 | tee "$out/gpu_check.log" ;;
esac
