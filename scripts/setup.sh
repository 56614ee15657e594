#!/usr/bin/env bash
# Create .venv (Python 3.11) and install hybridmi with its test extras; quick when already done.
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
