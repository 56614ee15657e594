"""A procedural 32x32 data set with real class structure, deterministic for a seed."""

from __future__ import annotations

import math

import torch

from hybridmi.data.prepared import Split, make_split
from hybridmi.errors import UsageError

GENERATOR_VERSION = 1  # bump when rendering changes, so cached decodes of old parameters are not reused
SHAPES = ("disk", "square", "ring", "cross", "triangle", "bar", "diamond", "stripes")
_CHUNK = 4096  # images rendered at once: bounds float memory to ~50 MB


def class_names(num_classes: int) -> list[str]:
    """Stable names: '<shape>-<index>' with a zero-padded index."""
    width = len(str(num_classes - 1))
    return [f"{SHAPES[c % len(SHAPES)]}-{c:0{width}d}" for c in range(num_classes)]


def _class_params(num_classes: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-class constants: orientation (rad), fg/bg colours (C,3) in [0,1], stripe frequency."""
    fg = torch.rand(num_classes, 3, generator=generator)
    bg = torch.rand(num_classes, 3, generator=generator)
    bg = torch.where((fg - bg).abs().sum(1, keepdim=True) < 0.6, 1.0 - fg, bg)  # keep the shape visible
    angle = torch.rand(num_classes, generator=generator) * math.pi  # drawn after the colours, before freq
    freq = 2.0 + 3.0 * torch.rand(num_classes, generator=generator)
    return {"angle": angle, "fg": fg, "bg": bg, "freq": freq}


def _inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
    """Signed 'insideness' (>0 inside) of each sample's shape at local coords u, v: (B,H,W)."""
    r = torch.sqrt(u * u + v * v)
    box = 1.0 - torch.maximum(u.abs(), v.abs())
    stripes = torch.minimum(box, 0.25 - (torch.remainder(v * freq, 1.0) - 0.5).abs())
    triangle = torch.minimum(v + 0.6, 0.8 - (1.4 * u.abs() + 0.7 * v))
    options = torch.stack(
        [
            1.0 - r,  # disk
            box,  # square
            0.3 - (r - 0.7).abs(),  # ring
            torch.maximum(torch.minimum(0.35 - u.abs(), 1 - v.abs()), torch.minimum(0.35 - v.abs(), 1 - u.abs())),
            triangle,  # triangle
            torch.minimum(1.0 - u.abs(), 0.35 - v.abs()),  # bar
            1.0 - (u.abs() + v.abs()),  # diamond
            stripes,  # stripes
        ],
        dim=1,
    )  # (B, 8, H, W)
    return options.gather(1, shape.view(-1, 1, 1, 1).expand(-1, 1, *u.shape[1:])).squeeze(1)


def render(labels: torch.Tensor, params: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """Images for labels (B,) as uint8 (B,3,32,32); all per-image randomness from ``generator``."""
    b = labels.shape[0]
    centre = (torch.rand(b, 2, generator=generator) - 0.5) * 0.8  # in [-0.4, 0.4] of the half-width
    scale = 0.35 + 0.35 * torch.rand(b, generator=generator)  # shape radius / half-width
    angle = params["angle"][labels] + (torch.rand(b, generator=generator) - 0.5) * 0.5
    fg = (params["fg"][labels] + 0.12 * torch.randn(b, 3, generator=generator)).clamp(0, 1)
    bg = (params["bg"][labels] + 0.12 * torch.randn(b, 3, generator=generator)).clamp(0, 1)
    noise = 0.04 * torch.randn(b, 3, 32, 32, generator=generator)

    axis = (torch.arange(32, dtype=torch.float32) + 0.5) / 16.0 - 1.0  # pixel centres in [-1, 1]
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")  # (32, 32)
    dx = gx - centre[:, 0, None, None]
    dy = gy - centre[:, 1, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u = (cos * dx + sin * dy) / scale[:, None, None]  # (B, 32, 32) local coords
    v = (-sin * dx + cos * dy) / scale[:, None, None]
    shape = labels % len(SHAPES)
    inside = _inside(shape, u, v, params["freq"][labels][:, None, None])
    mask = torch.sigmoid(inside * scale[:, None, None] * 24.0)[:, None]  # ~1 px soft edge
    images = bg[:, :, None, None] * (1 - mask) + fg[:, :, None, None] * mask + noise
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def _labels(n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Balanced labels (counts differ by at most one) in a seeded random order."""
    labels = torch.arange(n, dtype=torch.int64) % num_classes
    return labels[torch.randperm(n, generator=generator)]


def make_synthetic(*, num_classes: int, n_train: int, n_test: int, seed: int) -> tuple[Split, Split]:
    """(train, test) splits of the procedural data set; identical bytes for identical arguments."""
    if num_classes < 2:
        raise UsageError(f"synthetic data needs at least 2 classes, got {num_classes}")
    for what, n in (("n_train", n_train), ("n_test", n_test)):
        if n < 1:
            raise UsageError(f"synthetic {what} must be positive, got {n}")
    generator = torch.Generator().manual_seed(seed)
    params = _class_params(num_classes, generator)
    names = class_names(num_classes)
    splits = []
    for split, n in (("train", n_train), ("test", n_test)):
        labels = _labels(n, num_classes, generator)
        images = torch.cat([render(labels[i : i + _CHUNK], params, generator) for i in range(0, n, _CHUNK)])
        splits.append(make_split(images, labels, names, where=f"synthetic {split}"))
    return splits[0], splits[1]
