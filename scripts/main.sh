#!/usr/bin/env bash
# The main job: set up (.venv, the FID Inception weights), then run the whole pipeline on this machine —
# every stage as a kfp.local task in its own process, artifacts under runs/, data sets and checkpoints
# in the local artifact store runs/store — and print where the report is, its headline numbers and
# where the time went. Default preset: smoke (synthetic data, minutes on 2 CPU cores).
#
#   bash scripts/main.sh                                  # smoke preset
#   bash scripts/main.sh --config configs/cpu.yaml        # CIFAR-10 (JPEG copy in ../shared/data)
#   bash scripts/main.sh --set fid.reference_samples=500  # any `hybridmi run` option or --set override
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=("$@")
[[ " ${args[*]-} " == *" --config "* ]] || args=(--config configs/smoke.yaml "${args[@]}")
[[ " ${args[*]} " == *" --root "* ]] || args+=(--root runs)
# python -m from the repository root: this checkout's code, and the task processes inherit it.
exec .venv/bin/python -m hybridmi.cli run "${args[@]}"
