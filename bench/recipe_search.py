"""Recipe search on the CPU: variants of the ``cpu`` preset at an EQUAL budget, scored by linear accuracy
of y / ŷ / z and test MSE (CIFAR-10 JPEG copy), one JSON per run.

The goal (issue 10): a recipe where y alone reaches ≥ 50 % and z ≥ 55 % with MSE ≤ 2.5 after a 20-minute
CPU budget. Wall-clock budgets are unfair while several jobs share the cores, so the budget is a number
of training STEPS: ``BASE_STEPS``, what the baseline (the ``cpu`` preset) completes in 20 minutes on an
idle 2-core machine (see BASE_STEPS), scaled down by FLOPs per step (``bench/flops.py``) for a variant
whose step is dearer (a cheaper one, e.g. α = 0 or 1, keeps BASE_STEPS: equal steps, not equal time).

Each run is ``hybridmi train`` (prepare → train → probe → reconstruction) in a subprocess, so ``--code``
can point at another checkout (e.g. the code before the MoCo-v2 fixes) for before/after rows.

    .venv/bin/python bench/recipe_search.py --list                      # variants, steps, expected minutes
    .venv/bin/python bench/recipe_search.py --run baseline alpha0.2    # sequentially, results in --out
    .venv/bin/python bench/recipe_search.py --run baseline --code /tmp/hybridmi-before --tag before
    .venv/bin/python bench/recipe_search.py --summary                  # one Markdown table of every result
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from flops import build_step, image_flops, preset, timed_steps  # noqa: E402

TRAIN_IMAGES = 50_000  # CIFAR-10 (JPEG copy) train split
# 20 minutes of the baseline on an idle 2-core machine: 1200 s / the step time measured there (dev-2c, 2 threads,
# load 0.4, the cpu preset's step before the MoCo-v2 fixes: 0.507 s; bench/RESULTS.md "Recipe search"). A constant,
# so every run, now or later, gets the same budget; `--calibrate` measures the current step on an idle machine.
BASELINE_STEP_S = 0.507
BASE_STEPS = round(20 * 60 / BASELINE_STEP_S)

# name -> (overrides of the cpu preset, why). Reasons cite REFERENCE.md sec. 3 (MoCo CIFAR demo, d2c, MoCo-v2). The
# single-knob variants were first run against the preset before the search (α 0.5, T 0.1); against today's preset
# alpha0.1 and t0.2 are the baseline itself.
VARIANTS: dict[str, tuple[list[str], str]] = {
    "baseline": ([], "the cpu preset as it is: α 0.1, T 0.2, K 4096, m 0.99, AdamW 2e-3, head 768-512-128"),
    # The preset before the search (α 0.5, T 0.1) and MoCo-v2 alone at its temperature: the before/after ablation
    # of the MoCo-v2 fixes runs these two with --code at the old checkout (bench/RESULTS.md).
    "hybrid": (["objective.alpha=0.5", "objective.temperature=0.1"], "the cpu preset before the recipe search"),
    "moco": (["objective.alpha=0.0", "objective.temperature=0.1"], "MoCo-v2 alone at the old preset's temperature"),
    "alpha0": (["objective.alpha=0.0"], "MoCo-v2 alone: the ceiling of y at this budget"),
    "alpha1": (["objective.alpha=1.0"], "autoencoder alone (clean images + flips): the floor, and the best MSE"),
    "alpha0.2": (
        ["objective.alpha=0.2"],
        "loss balance: reconstruction (Σ over 3072 values) dominates the encoder's "
        "gradient at α 0.5; under Adam a constant rescale of one term IS a change of α",
    ),
    "alpha0.1": (["objective.alpha=0.1"], "stronger shift to InfoNCE"),
    "alpha0.05": (["objective.alpha=0.05"], "near MoCo-v2 alone; does MSE stay ≤ 2.5?"),
    "t0.2": (["objective.temperature=0.2"], "MoCo-v2's ImageNet temperature; smoother early gradients"),
    "t0.07": (["objective.temperature=0.07"], "the authors' d2c temperature"),
    "queue1024": (["objective.queue_size=1024"], "few steps: fewer, fresher negatives (4 steps of keys)"),
    "queue16384": (["objective.queue_size=16384"], "more negatives (d2c uses 65536)"),
    "momentum0.996": (["objective.momentum=0.996"], "slower key encoder, more consistent queue"),
    "lr4e-3": (["optim.lr=4e-3"], "short schedule: a higher peak"),
    "lr1e-3": (["optim.lr=1e-3"], "d2c's AdamW learning rate"),
    "sgd": (
        ["optim.name=sgd", "optim.lr=0.03", "optim.momentum=0.9", "optim.weight_decay=5e-4"],
        "the MoCo CIFAR demo's SGD (lr 0.06 at batch 512, scaled to 128 ≈ 0.015-0.03), wd 5e-4",
    ),
    "head2048": (["model.proj_hidden=2048"], "MoCo-v2's hidden width"),
    "wd5e-4": (["optim.weight_decay=5e-4"], "the demo's weight decay"),
    "nosplitbn": (["objective.bn_splits=1", "objective.shuffle_bn=false"], "ablation: whole-batch BN on both sides"),
    "alpha0.2-t0.2": (["objective.alpha=0.2", "objective.temperature=0.2"], "the two likeliest changes together"),
}


def steps_for(overrides: list[str], budget: int = BASE_STEPS) -> int:
    """The variant's step budget: BASE_STEPS, scaled down by baseline / variant FLOPs per step when dearer."""
    base, variant = preset("cpu"), preset("cpu", overrides)
    per_step = lambda cfg: image_flops(cfg, "cpu", count_batch=16) * cfg.train.batch_size  # noqa: E731
    return max(1, round(budget * min(1.0, per_step(base) / per_step(variant))))


def run_variant(
    name: str, overrides: list[str], *, out: Path, code: Path, tag: str, threads: int, budget: int = BASE_STEPS
) -> dict:
    """Train + probe + reconstruction of one variant in a subprocess; returns (and writes) its result JSON."""
    cfg = preset("cpu", overrides)
    steps = steps_for(overrides, budget)
    epochs = steps / (TRAIN_IMAGES // cfg.train.batch_size)
    label = f"{name}-{tag}" if tag else name
    run_dir = out.resolve() / label  # absolute: the subprocess runs in `code`, which may be another checkout
    # The preset of the checkout that runs (an older checkout's config schema may lack newer fields), with the
    # data root resolved from this checkout (the preset's root is relative to the repository).
    data_root = (ROOT / cfg.data.root).resolve()
    command = [
        sys.executable,
        "-m",
        "hybridmi.cli",
        "train",
        "--config",
        str(code / "configs" / "cpu.yaml"),
        "--out",
        str(run_dir),
        "--set",
        f"data.root={data_root}",
        "--set",
        f"train.epochs={epochs!r}",
        "--set",
        f"train.threads={threads}",
        *[arg for o in overrides for arg in ("--set", o)],
    ]
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads)}
    start = time.time()
    subprocess.run(command, cwd=code, env=env, check=True)
    read = lambda stage: json.loads((run_dir / stage / "metrics.json").read_text())  # noqa: E731
    probe, recon, model = read("probe"), read("reconstruction"), read("model")
    result = {
        "variant": name,
        "tag": tag,
        "code": str(code),
        "overrides": overrides,
        "steps": steps,
        "epochs": epochs,
        "linear_acc_y": probe["linear_acc_y"],
        "linear_acc_yhat": probe["linear_acc_yhat"],
        "linear_acc_z": probe["linear_acc_z"],
        "mse": recon["mse"],
        "psnr": recon["psnr"],
        "train_seconds": model.get("train_seconds"),
        "final_loss_terms": {k: v for k, v in model.items() if k.startswith("loss")},
        "wall_seconds": time.time() - start,
        "threads": threads,
    }
    (out / f"{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def summary(out: Path) -> str:
    rows = ["| run | steps | y | ŷ | z | MSE | train s |", "|---|---|---|---|---|---|---|"]
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        rows.append(
            f"| {path.stem} | {r['steps']} | {100 * r['linear_acc_y']:.1f} % | {100 * r['linear_acc_yhat']:.1f} % "
            f"| {100 * r['linear_acc_z']:.1f} % | {r['mse']:.2f} | {r['train_seconds'] or 0:.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print variants, step budgets and expected durations")
    parser.add_argument(
        "--calibrate", action="store_true", help="time 20 baseline steps here (run it on an idle machine)"
    )
    parser.add_argument("--run", nargs="+", default=[], help="variant names to run, in order")
    parser.add_argument("--variant", action="append", default=[], help="an extra variant NAME=a.b=v,c.d=w")
    parser.add_argument("--summary", action="store_true", help="print a Markdown table of the results in --out")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "recipe")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose hybridmi runs (PYTHONPATH)")
    parser.add_argument("--tag", default="", help="suffix of the result names (e.g. 'before')")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--steps",
        type=int,
        default=BASE_STEPS,
        help=f"the equal budget in baseline steps (default {BASE_STEPS}: 20 minutes); a smaller one for ablations",
    )
    args = parser.parse_args()
    variants = dict(VARIANTS)
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        variants[name] = (overrides.split(","), "given on the command line")
    if args.calibrate:
        import torch

        torch.set_num_threads(args.threads)
        cfg = preset("cpu", ["train.device=cpu"])
        timing = timed_steps(build_step(cfg, torch.device("cpu")), cfg, torch.device("cpu"), steps=20, warmup=3)
        print(
            f"baseline step {timing['step_s']:.3f} s with {args.threads} threads: 20 minutes = "
            f"{round(1200 / timing['step_s'])} steps (BASE_STEPS now {BASE_STEPS})"
        )
    if args.list:
        print(f"budget: {BASE_STEPS} steps of the baseline ({BASELINE_STEP_S} s/step idle, 2 threads: 20 min)")
        for name, (overrides, why) in variants.items():
            steps = steps_for(overrides)
            print(
                f"{name:16s} {steps:5d} steps  ~{steps * BASELINE_STEP_S / 60 + 3:4.0f} min  {' '.join(overrides) or '-'}  # {why}"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.run:
        if name not in variants:
            raise SystemExit(f"unknown variant {name!r}; --list shows them")
        result = run_variant(
            name,
            variants[name][0],
            out=args.out,
            code=args.code.resolve(),
            tag=args.tag,
            threads=args.threads,
            budget=args.steps,
        )
        print(json.dumps(result, indent=2), flush=True)
    if args.summary:
        print(summary(args.out))


if __name__ == "__main__":
    main()
