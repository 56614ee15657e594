"""Hybrid training throughput: on-device batched augmentation vs a per-image PIL DataLoader.

For each model size (the `cpu` and `cifar10` presets) it times the SAME training step fed two ways,
in one run, so the speed-up of on-device augmentation is a measured ratio:
  device  uint8 images resident on the device, per-sample MoCo-v2 augmentation on batched tensors
  pil     torchvision transforms on PIL images in DataLoader workers (the conventional pipeline)
Prints a Markdown table (images/s counts images, each seen as two views) and peak memory.

    .venv/bin/python bench/train_throughput.py --steps 10 --batch-size 128
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from hybridmi.config import load_config
from hybridmi.data.augment import to_float
from hybridmi.data.synthetic import make_synthetic
from hybridmi.runtime import autocast_dtype, choose_device
from hybridmi.train.hybrid_step import HybridStep, build_models, make_optimizer, trainable

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class TwoViewPIL(Dataset):
    """Per-image torchvision pipeline (PIL), two augmented views per image."""

    def __init__(self, images: torch.Tensor):
        self.images = images
        self.tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(32, scale=(0.2, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                transforms.RandomGrayscale(p=0.2),
                transforms.ToTensor(),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = transforms.functional.to_pil_image(self.images[i])
        return self.tf(img), self.tf(img)


class PrecomputedViews(HybridStep):
    """The trainer's step fed with views made elsewhere (the PIL loader's): ``batch`` is the pair (v1, v2)."""

    def views(self, batch, generator):
        v1, v2 = batch
        perm = self.moco.key_permutation(v1.shape[0], generator=generator, device=v1.device)
        x = self._layout(torch.cat([v1, v2]))
        return x, x, perm


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(preset: str, feed: str, *, steps: int, warmup: int, batch_size: int, device: torch.device, workers: int):
    cfg = load_config(
        CONFIGS / f"{preset}.yaml",
        [
            f"train.batch_size={batch_size}",
            f"objective.queue_size={batch_size * 8}",
            "train.compile=false",
            f"train.device={device}",
        ],
    )
    autoencoder, moco = build_models(cfg)
    channels_last = device.type == "cuda"
    for module in (autoencoder, moco):
        module.to(device, memory_format=torch.channels_last) if channels_last else module.to(device)
    autoencoder.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = make_optimizer([p for _, p in trainable(autoencoder, moco)], cfg)
    kind = HybridStep if feed == "device" else PrecomputedViews
    step = kind(
        autoencoder,
        moco,
        optimizer,
        alpha=cfg.objective.alpha,
        grad_clip=0.0,
        on_nonfinite="stop",
        amp=autocast_dtype(cfg.train.precision, device),
        channels_last=channels_last,
    )
    train, _ = make_synthetic(num_classes=10, n_train=batch_size * (steps + warmup), n_test=10, seed=0)

    if feed == "device":
        images = train.images.to(device)

        def batches():
            for i in range(steps + warmup):
                yield to_float(images[i * batch_size : (i + 1) * batch_size])
    else:
        loader = DataLoader(
            TwoViewPIL(train.images),
            batch_size=batch_size,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            drop_last=True,
            persistent_workers=False,
        )

        def batches():
            for v1, v2 in loader:
                yield v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)

    generator = torch.Generator(device=device)
    start = None
    for i, batch in enumerate(batches()):
        if i == warmup:
            step.guard.read()  # waits for the device
            start = time.perf_counter()
        step(batch, generator=generator.manual_seed(i), lr=cfg.optim.lr)
    step.guard.read()
    elapsed = time.perf_counter() - start
    mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_rss_mib()
    return steps * batch_size / elapsed, mem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cpu", "cifar10"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the PIL feed")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = choose_device(args.device)
    mem_label = "peak CUDA MiB" if device.type == "cuda" else "peak RSS MiB (process)"
    print(
        f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
        f"batch {args.batch_size}, {args.steps} timed steps"
    )
    print(f"| preset | feed | images/s | {mem_label} | device/pil |")
    print("|---|---|---|---|---|")
    for preset in args.presets:
        rates = {}
        for feed in ("device", "pil"):
            rate, mem = bench(
                preset,
                feed,
                steps=args.steps,
                warmup=args.warmup,
                batch_size=args.batch_size,
                device=device,
                workers=args.workers,
            )
            rates[feed] = rate
            ratio = f"{rates['device'] / rates['pil']:.2f}x" if feed == "pil" else ""
            print(f"| {preset} | {feed} | {rate:.0f} | {mem:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
