"""Sample FID against DDIM training epochs, beside the reconstruction FID that bounds it, from one run's artifacts.

    .venv/bin/python bench/ddim_fid_curve.py --config configs/cpu.yaml --run OUT --every 2 --num 1000 \\
        --curve /tmp/curve [--set ddim.epochs=20]

OUT is a local run (`hybridmi run --out OUT`: OUT/dataset, OUT/model, OUT/latents). One DDIM of ddim.epochs is
trained in --curve/ddim, stopping every --every epochs to draw --num samples with the config's sampler (steps, η,
seed) and score them with the fid stage's protocol (same reference statistics); the reconstruction FID of as many
test images is measured once. --curve/ddim holds the DDIM with its history.json, as the ddim stage's does. Stopping
and resuming does not change the run: the learning-rate schedule is that of the full ddim.epochs, and a point already
in curve.jsonl is not measured again.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from hybridmi.config import load_config
from hybridmi.eval.latents import load_latents, load_stats
from hybridmi.stages.common import sampler_settings
from hybridmi.stages.fid import Scorer
from hybridmi.train.ddim import train_ddim
from hybridmi.train.history import HISTORY_FILE, write_history
from hybridmi.train.sampling import decoded_samples, load_sampler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE")
    p.add_argument("--run", type=Path, required=True, help="a local run with dataset/, model/ and latents/")
    p.add_argument("--every", type=float, required=True, help="DDIM epochs between FID points")
    p.add_argument("--num", type=int, default=1000, help="samples (and reconstructed test images) per FID")
    p.add_argument("--curve", type=Path, required=True, help="output: ddim/, curve.jsonl")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    artifacts = {name: args.run / name for name in ("dataset", "model", "latents")}
    missing = [str(path) for path in artifacts.values() if not path.is_dir()]
    if missing or args.every <= 0 or args.num < 2:
        raise SystemExit(f"ddim_fid_curve: need --every > 0, --num ≥ 2 and the run's {', '.join(missing) or 'dirs'}")
    train = load_latents(artifacts["latents"] / "train.pt")
    mean, std = load_stats(artifacts["latents"] / "stats.json")
    steps_per_epoch = len(train.latents) // cfg.ddim.batch_size
    points = [min(cfg.ddim.epochs, args.every * k) for k in range(1, math.ceil(cfg.ddim.epochs / args.every) + 1)]
    scorer = Scorer.load(cfg, artifacts["dataset"])
    log = args.curve / "curve.jsonl"
    args.curve.mkdir(parents=True, exist_ok=True)
    done = {row["epochs"]: row for row in map(json.loads, log.read_text().splitlines())} if log.is_file() else {}
    settings = sampler_settings(cfg.sampling)
    if "recon" not in done:
        start = time.monotonic()
        recon = scorer.reconstruction_fid(
            artifacts["model"], args.num, seed=cfg.fid.reference_seed, batch_size=cfg.fid.batch_size
        )
        row = {"epochs": "recon", "recon_fid": recon, "num": args.num, "seconds": round(time.monotonic() - start, 1)}
        _append(log, row)
    for epochs in points:
        if epochs in done:
            continue
        start = time.monotonic()
        result = train_ddim(
            cfg,
            train.latents,
            mean=mean,
            std=std,
            out_dir=args.curve / "ddim",
            stop_at_step=round(epochs * steps_per_epoch),
        )
        trained = time.monotonic() - start
        write_history(args.curve / "ddim" / HISTORY_FILE, result.history, kind="ddim")  # for the figures stage's curve
        ddim, autoencoder = load_sampler(
            ddim=args.curve / "ddim", **{k: artifacts[k] for k in ("latents", "model")}, device=scorer.device
        )
        fid = scorer.fid(decoded_samples(ddim, autoencoder, args.num, **settings))
        last = result.last_metrics
        row = {
            "epochs": epochs,
            "step": result.step,
            "fid": fid,
            "num": args.num,
            "ddim_loss": None if last is None else last.loss,
            "train_s": round(trained, 1),
            "score_s": round(time.monotonic() - start - trained, 1),
            "sampler": settings,
        }
        _append(log, row)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    recon = next(r["recon_fid"] for r in rows if r["epochs"] == "recon")
    print(f"reconstruction FID (N = {args.num}): {recon:.2f}")
    print("| DDIM epochs | step | sample FID | FID / recon FID | DDIM loss |\n|---|---|---|---|---|")
    for r in (r for r in rows if r["epochs"] != "recon"):
        loss = "–" if r["ddim_loss"] is None else f"{r['ddim_loss']:.4f}"
        ratio = f"{r['fid'] / recon:.2f}" if recon > 0 else "–"
        print(f"| {r['epochs']:g} | {r['step']} | {r['fid']:.2f} | {ratio} | {loss} |")


def _append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
