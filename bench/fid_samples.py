"""FID of the GPU check's decoded samples (``samples.npz``: uint8 (N, 32, 32, 3)), against a seeded random
subset of the CIFAR-10 (JPEG copy) train split, with the real Inception weights (which stay on this machine).

Reference statistics are cached by content and weights. About 13 images/s on 2 CPU cores.

    .venv/bin/python bench/fid_samples.py OUT/samples.npz --reference-size 10000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hybridmi.config import DataConfig  # noqa: E402
from hybridmi.data.prepare import cached_decode  # noqa: E402
from hybridmi.data.prepared import content_checksum  # noqa: E402
from hybridmi.eval.fid import (  # noqa: E402
    activation_statistics,
    frechet_distance,
    load_inception,
    reference_statistics,
    uint8_batches,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, help="samples.npz from gpu_check.py")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz")
    parser.add_argument("--reference-size", type=int, default=10000, help="random train images in the reference")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reference subset")
    parser.add_argument("--weights", type=Path, help="pytorch-fid Inception state dict (default: torch.hub cache)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "hybridmi" / "fid")
    args = parser.parse_args()
    with np.load(args.samples) as f:
        samples = torch.from_numpy(f["images"]).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    if samples.dtype != torch.uint8 or samples.shape[1:] != (3, 32, 32):
        raise SystemExit(f"{args.samples}: expected uint8 (N, 32, 32, 3), got {samples.dtype} {tuple(samples.shape)}")
    train, _, _ = cached_decode(DataConfig(source="folder", root=str(args.data)))
    order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(args.seed))
    order = order[: args.reference_size]  # never "the first N": the split is stored class by class
    model = load_inception(weights_path=args.weights, device="cpu")
    reference = reference_statistics(
        train.images[order],
        checksum=content_checksum(train.images[order], train.labels[order]),
        model=model,
        cache_dir=args.cache_dir,
        batch_size=args.batch_size,
    )
    result = {
        "fid": frechet_distance(*activation_statistics(uint8_batches(samples, args.batch_size), model), *reference),
        "num_samples": len(samples),
        "reference": f"{len(order)} random CIFAR-10 (JPEG copy) train images, seed {args.seed}",
        "weights_sha256": model.weights_sha256,
    }
    (args.samples.parent / "fid.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
