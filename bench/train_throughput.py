"""Hybrid training throughput: on-device batched augmentation vs a per-image PIL DataLoader.

Times the trainer's step fed two ways, in one run, per model size (the `cpu` and `cifar10` presets):
``device``: uint8 images resident on the device, MoCo-v2 augmentation per sample on batched tensors;
``pil``: torchvision transforms on PIL images in DataLoader workers. Prints images/s and peak memory.

    .venv/bin/python bench/train_throughput.py --steps 10 --batch-size 128
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from flops import build_step, preset  # bench/ is this script's sys.path[0]
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from hybridmi.data.augment import to_float
from hybridmi.data.synthetic import make_synthetic
from hybridmi.runtime import choose_device
from hybridmi.train.hybrid_step import HybridStep


class TwoViewPIL(Dataset):
    """Per-image torchvision pipeline (PIL), two augmented views per image."""

    def __init__(self, images: torch.Tensor):
        self.images = images
        jitter = transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)
        crop, flip = transforms.RandomResizedCrop(32, scale=(0.2, 1.0)), transforms.RandomHorizontalFlip()
        self.tf = transforms.Compose([crop, flip, jitter, transforms.RandomGrayscale(p=0.2), transforms.ToTensor()])

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


def bench(name: str, feed: str, *, steps: int, warmup: int, batch_size: int, device: torch.device, workers: int):
    """(images/s, peak memory MiB: CUDA allocated or the process's RSS) of one preset and feed."""
    overrides = [f"train.batch_size={batch_size}", f"objective.queue_size={batch_size * 8}", "runtime.compile=false"]
    cfg = preset(name, overrides)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = build_step(cfg, device, kind=HybridStep if feed == "device" else PrecomputedViews)
    train, _ = make_synthetic(num_classes=10, n_train=batch_size * (steps + warmup), n_test=10, seed=0)
    if feed == "device":
        images = train.images.to(device)
        batches = (to_float(images[i * batch_size : (i + 1) * batch_size]) for i in range(steps + warmup))
    else:
        loader = DataLoader(
            TwoViewPIL(train.images), batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda"
        )
        batches = ((v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)) for v1, v2 in loader)
    generator = torch.Generator(device=device)
    for i, batch in enumerate(batches):
        if i == warmup:
            step.guard.read()  # waits for the device
            start = time.perf_counter()
        step(batch, generator=generator.manual_seed(i), lr=cfg.optim.lr)
    step.guard.read()
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        return steps * batch_size / elapsed, torch.cuda.max_memory_allocated(device) / 2**20
    return steps * batch_size / elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device: {device} ({where}), batch {args.batch_size}, {args.steps} timed steps")
    print(f"| preset | feed | images/s | peak {'CUDA' if device.type == 'cuda' else 'RSS'} MiB | device/pil |")
    print("|---|---|---|---|---|")
    for name in args.presets:
        rates = {}
        for feed in ("device", "pil"):
            kwargs = dict(steps=args.steps, warmup=args.warmup, batch_size=args.batch_size, workers=args.workers)
            rates[feed], mem = bench(name, feed, device=device, **kwargs)
            ratio = f"{rates['device'] / rates['pil']:.2f}x" if feed == "pil" else ""
            print(f"| {name} | {feed} | {rates[feed]:.0f} | {mem:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
