"""The FID floor of a data set: N random test images against the statistics of N random train images.

Samples cannot be expected to score below this at the same N: it is what the finite sample (and, for the
CIFAR-10 JPEG copy, the re-encoding) costs by itself. The train statistics are the fid stage's own (same
subset, seed and cache key: $HYBRIDMI_FID_CACHE, else fid.cache_dir), so a pipeline run reuses them.

    .venv/bin/python bench/fid_floor.py --config configs/cpu.yaml --num 5000 [--set a.b=v ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

from hybridmi.config import load_config
from hybridmi.data.prepare import prepare_dataset
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.fid import frechet_distance, load_inception, reference_statistics
from hybridmi.runtime import choose_device


def fid_floor(cfg, *, num: int, seed: int | None = None) -> dict:
    """FID of ``num`` random test images against ``num`` random train images (statistics cached)."""
    seed = cfg.fid.reference_seed if seed is None else seed
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hybridmi-fid-floor-") as tmp:
        prepare_dataset(cfg.data, Path(tmp) / "dataset")  # decoded once, from data.cache_dir when warm
        train, test = load_dataset(Path(tmp) / "dataset")
    model = load_inception(weights_path=cfg.fid.weights, device=choose_device(cfg.runtime.device))
    cache_dir = Path(os.environ.get("HYBRIDMI_FID_CACHE") or cfg.fid.cache_dir).expanduser()
    result, stats = {}, {}
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
        result[f"{name}_statistics_s"] = round(time.monotonic() - split_start, 1)
        result[f"{name}_checksum"] = split.checksum
    return result | {
        "fid": frechet_distance(*stats["test"], *stats["train"]),
        "num": num,
        "seed": seed,
        "weights_sha256": model.weights_sha256,
        "weights_recorded": model.weights_record is not None,
        "seconds": round(time.monotonic() - start, 1),
        "data": f"{cfg.data.source} {cfg.data.root or ''}".strip(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE")
    parser.add_argument("--num", type=int, required=True, help="images per side (the pipeline's FID N)")
    parser.add_argument("--seed", type=int, help="subset seed (default: fid.reference_seed)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    r = fid_floor(load_config(args.config, args.overrides), num=args.num, seed=args.seed)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    note = "" if r["weights_recorded"] else " (no conversion record: not a result)"
    print("| data | N (test vs train) | FID floor | statistics s (train / test) | weights |\n|---|---|---|---|---|")
    print(
        f"| {r['data']} | {r['num']:,} (seed {r['seed']}) | {r['fid']:.2f} | "
        f"{r['train_statistics_s']} / {r['test_statistics_s']} | {r['weights_sha256'][:12]}{note} |"
    )


if __name__ == "__main__":
    main()
