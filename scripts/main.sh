#!/usr/bin/env bash
# The main job: set up (.venv, the FID weights), then `hybridmi run`: the whole pipeline on this machine under
# kfp.local (artifacts under runs/, data sets and checkpoints in runs/store), ending with where the report is,
# its headline numbers and where the time went. The full log goes to <root>/main-<time>.log.
#
#   bash scripts/main.sh                                  # smoke preset (synthetic data, minutes on 2 CPU cores)
#   bash scripts/main.sh --config configs/cpu.yaml        # CIFAR-10 (JPEG copy in ../shared/data)
#   bash scripts/main.sh --set fid.reference_samples=500  # any `hybridmi run` option or --set override
#
# Tasks run one at a time, each on every core torch sees; OMP_NUM_THREADS=1 is the setting for cores shared with
# other heavy jobs, where a second thread per task can cost far more than it gives (bench/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=("$@")
[[ " ${args[*]-} " == *" --config "* ]] || args=(--config configs/smoke.yaml "${args[@]}")
root=runs
for ((i = 0; i < ${#args[@]}; i++)); do [[ "${args[$i]}" == --root ]] && root="${args[$((i + 1))]:-runs}"; done
[[ " ${args[*]} " == *" --root "* ]] || args+=(--root "$root")
mkdir -p "$root"
log="$root/main-$(date +%Y%m%d-%H%M%S).log"
echo "main: hybridmi run ${args[*]}"
echo "main: full log in $log"
# python -m from the repository root: this checkout's code, for the task processes too.
.venv/bin/python -m hybridmi.cli run "${args[@]}" 2>&1 | tee "$log" | sed -u 's/\x1b\[[0-9;]*m//g' \
  | grep --line-buffered -E "Executing task|finished with status|^hybridmi: |^run: |^report: |^        /|^\||^time per task|^stages "
