"""Variants of a preset at an equal number of steps and several seeds: `hybridmi train` per (variant, seed), then one
table of the probe (linear y / ŷ / z, kNN), the test MSE and the training time, mean and spread over seeds.

    .venv/bin/python bench/ablation.py --config configs/cpu.yaml --steps 600 --seeds 0 1 \\
        --variant preset= --variant moco=objective.alpha=0 --out /tmp/ablation --jobs 2

A variant is NAME=KEY=VALUE[,KEY=VALUE...] (`--set` overrides; NAME= alone is the preset). Each run lands in
OUT/NAME-sSEED; a finished run (its probe and reconstruction metrics exist) is not run again, so the command resumes;
--table-only tabulates the finished runs and starts none. --recon-fid N adds the reconstruction FID of N test images
(the fid stage's protocol: the config's reference statistics and subset seed), measured once per run and kept in
OUT/NAME-sSEED/recon_fid_N.json.
Equal steps, not equal minutes: the cores may be shared, and steps make the runs comparable whatever else runs. A
variant that sets train.time_budget_minutes trains for that wall-clock instead (--steps then sets nothing for it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COLUMNS = (  # (metrics key, header, scale, format)
    ("linear_acc_y", "y", 100, ".2f"),
    ("linear_acc_yhat", "ŷ", 100, ".2f"),
    ("linear_acc_z", "z", 100, ".2f"),
    ("knn_acc_z", "kNN z", 100, ".2f"),
    ("mse", "MSE", 1, ".2f"),
    ("train_steps", "steps", 1, ".0f"),
    ("train_s", "train s", 1, ".0f"),
    ("recon_fid", "recon FID", 1, ".1f"),
)


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition("=")
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SystemExit(f"ablation: bad variant {text!r}: expected NAME=KEY=VALUE[,KEY=VALUE...] or NAME=")
    return name, [s for s in sets.split(",") if s]


def epochs_for(config: Path, steps: int, overrides: list[str], train_size: int) -> float:
    """train.epochs giving ``steps`` optimisation steps on a train split of ``train_size`` images (checks overrides)."""
    from hybridmi.config import load_config

    return steps * load_config(config, overrides).train.batch_size / train_size


def run_one(args: argparse.Namespace, name: str, sets: list[str], seed: int) -> dict | None:
    out = args.out / f"{name}-s{seed}"
    done = out / "probe" / "metrics.json", out / "reconstruction" / "metrics.json"
    if args.table_only and not all(p.is_file() for p in done):
        return None
    if not all(p.is_file() for p in done):
        overrides = [*sets, f"train.seed={seed}", f"runtime.threads={args.threads}"]
        overrides.append(f"train.epochs={epochs_for(args.config, args.steps, overrides, args.train_size)!r}")
        command = [str(Path(sys.executable).parent / "hybridmi"), "train", "--config", str(args.config), "--out"]
        command += [str(out), *(x for o in overrides for x in ("--set", o))]
        out.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with open(out / "train.log", "ab") as log:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            code = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            raise SystemExit(f"ablation: {name} seed {seed} failed ({code}); see {out / 'train.log'}")
        print(f"{name} seed {seed}: {time.monotonic() - start:.0f} s", flush=True)
    row = {"variant": name, "seed": seed, "sets": sets}
    for path in done:
        row.update(json.loads(path.read_text()))
    artifact = json.loads((out / "model" / "artifact.json").read_text())
    row["train_s"] = artifact.get("seconds")
    trained = out / "model" / "metrics.json"  # the trainer's: steps, train_seconds, the last losses
    row.update({f"train_{k}": v for k, v in (json.loads(trained.read_text()) if trained.is_file() else {}).items()})
    if args.recon_fid:
        row["recon_fid"] = reconstruction_fid(args.config, out, args.recon_fid)
    return row


def reconstruction_fid(config: Path, run: Path, num: int) -> float:
    """FID of ``num`` test images encoded and decoded by the run's model, by the fid stage's protocol in ``config``;
    measured once, then read from the run's recon_fid_NUM.json."""
    from hybridmi.config import load_config
    from hybridmi.runtime import write_json
    from hybridmi.stages.fid import Scorer

    kept = run / f"recon_fid_{num}.json"
    if kept.is_file():
        return float(json.loads(kept.read_text())["recon_fid"])
    cfg = load_config(config)
    f, start = cfg.fid, time.monotonic()
    value = Scorer.load(cfg, run / "dataset").reconstruction_fid(
        run / "model", num, seed=f.reference_seed, batch_size=f.batch_size
    )
    write_json(kept, {"recon_fid": value, "num": num, "seconds": round(time.monotonic() - start, 1)})
    return value


def table(rows: list[dict], variants: list[str]) -> str:
    lines = ["| variant | seeds | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |"]
    lines.append("|---|---|" + "---|" * len(COLUMNS))
    for name in variants:
        runs = [r for r in rows if r["variant"] == name]
        cells = []
        for key, _, scale, fmt in COLUMNS:
            values = [scale * r[key] for r in runs if isinstance(r.get(key), (int, float))]
            if not values:
                cells.append("–")
            elif len(values) == 1:
                cells.append(format(values[0], fmt))
            else:  # mean ± half the range (two seeds: the two runs are mean ± this)
                cells.append(f"{statistics.mean(values):{fmt}} ± {(max(values) - min(values)) / 2:{fmt}}")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--steps", type=int, required=True, help="optimisation steps per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--variant", action="append", required=True, help="NAME=KEY=VALUE[,KEY=VALUE...]")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=1, help="runs side by side")
    p.add_argument("--threads", type=int, default=1, help="threads per run")
    p.add_argument("--table-only", action="store_true", help="tabulate the finished runs, start none")
    p.add_argument("--train-size", type=int, default=50_000, help="images in the train split (CIFAR: 50,000)")
    p.add_argument("--recon-fid", type=int, default=0, metavar="N", help="also the reconstruction FID of N test images")
    args = p.parse_args(argv)
    if not args.config.is_file():
        raise SystemExit(f"ablation: no config file {args.config}")
    if args.recon_fid == 1 or args.recon_fid < 0:
        raise SystemExit(f"ablation: --recon-fid needs N ≥ 2 test images (or 0: not measured), not {args.recon_fid}")
    variants = dict(map(parse_variant, args.variant))
    for name, sets in variants.items():  # every override valid before any run starts
        epochs_for(args.config, args.steps, sets, args.train_size)
    plan = [(name, sets, seed) for seed in args.seeds for name, sets in variants.items()]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = [row for row in pool.map(lambda job: run_one(args, *job), plan) if row is not None]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    (args.out / "config.yaml").write_text(yaml.safe_dump({"config": str(args.config), "steps": args.steps}))
    print(table(rows, list(variants)))


if __name__ == "__main__":
    main()
