#!/usr/bin/env bash
# The main job: set up, then train + evaluate on a data source (default preset: smoke).
# Usage: scripts/main.sh [--config configs/cpu.yaml] [--set a.b=value ...] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=("$@")
[[ " ${args[*]-} " == *" --config "* ]] || args=(--config configs/smoke.yaml "${args[@]}")
[[ " ${args[*]} " == *" --out "* ]] || args+=(--out "runs/$(date +%Y%m%d-%H%M%S)")
exec .venv/bin/hybridmi train "${args[@]}"
