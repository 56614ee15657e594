"""The FID floor of a data set: N random test images against the statistics of N random train images.

Samples of a generative model cannot be expected to score below this at the same N: it is what the
finite sample, and for the CIFAR-10 JPEG copy the re-encoding, cost by themselves. The train
statistics are the fid stage's own (same subset, seed and cache key: $HYBRIDMI_FID_CACHE, else
fid.cache_dir), so after a pipeline run with fid.reference_samples = N they are reused, and vice versa.

    .venv/bin/python bench/fid_floor.py --config configs/cpu.yaml --num 5000 [--set a.b=v ...] [--json out.json]

Prints one Markdown table row (and writes the JSON): FID, N, seeds, weights hash, seconds, machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from hybridmi.config import load_config
from hybridmi.data.prepare import prepare_dataset
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.fid import frechet_distance, load_inception, reference_statistics
from hybridmi.runtime import choose_device

CACHE_ENV = "HYBRIDMI_FID_CACHE"


def fid_floor(cfg, *, num: int, seed: int | None = None) -> dict:
    """FID of ``num`` random test images against ``num`` random train images (statistics cached); a result dict."""
    seed = cfg.fid.reference_seed if seed is None else seed
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hybridmi-fid-floor-") as tmp:
        prepare_dataset(cfg.data, Path(tmp) / "dataset")  # decoded once, from data.cache_dir when warm
        train, test = load_dataset(Path(tmp) / "dataset")
    model = load_inception(weights_path=cfg.fid.weights, device=choose_device(cfg.train.device))
    cache_dir = Path(os.environ.get(CACHE_ENV) or cfg.fid.cache_dir).expanduser()
    stats = {}
    for name, split in (("train", train), ("test", test)):
        if num > len(split.labels):
            raise ValueError(f"--num {num} is more than the {len(split.labels)} images of the {name} split")
        split_start = time.monotonic()
        stats[name] = reference_statistics(
            split.images,
            checksum=split.checksum,
            model=model,
            cache_dir=cache_dir,
            batch_size=cfg.fid.batch_size,
            num=num,
            seed=seed,
        )
        stats[f"{name}_seconds"] = time.monotonic() - split_start
    return {
        "fid": frechet_distance(*stats["test"], *stats["train"]),
        "num": num,
        "seed": seed,
        "reference": "train",
        "candidate": "test",
        "train_checksum": train.checksum,
        "test_checksum": test.checksum,
        "weights_sha256": model.weights_sha256,
        "weights_recorded": model.weights_record is not None,
        "train_statistics_s": round(stats["train_seconds"], 1),
        "test_statistics_s": round(stats["test_seconds"], 1),
        "seconds": round(time.monotonic() - start, 1),
        "data": cfg.data.source,
        "data_root": cfg.data.root,
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "machine": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE")
    parser.add_argument("--num", type=int, required=True, help="images per side (the pipeline's FID N)")
    parser.add_argument("--seed", type=int, help="subset seed (default: fid.reference_seed)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = fid_floor(load_config(args.config, args.overrides), num=args.num, seed=args.seed)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("| data | N (test vs train) | FID floor | statistics s (train / test) | weights |")
    print("|---|---|---|---|---|")
    print(
        f"| {result['data']} {result['data_root'] or ''} | {result['num']:,} (seed {result['seed']}) | {result['fid']:.2f} | "
        f"{result['train_statistics_s']} / {result['test_statistics_s']} | {result['weights_sha256'][:12]}"
        f"{'' if result['weights_recorded'] else ' (no conversion record: not a result)'} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
