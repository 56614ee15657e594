"""Reconstruction error in the paper's unit (REFERENCE.md sec. 2) and PSNR."""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn

from hybridmi.data.augment import to_float
from hybridmi.data.prepared import Split
from hybridmi.eval.samples import to_uint8

VALUES_PER_IMAGE = 3 * 32 * 32


def squared_error_per_image(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ over C, H, W of (x̂ − x)²: (B, C, H, W) in [0, 1] → (B,)."""
    if x_hat.shape != x.shape:
        raise ValueError(f"shapes differ: x_hat {tuple(x_hat.shape)} vs x {tuple(x.shape)}")
    return (x_hat.float() - x.float()).pow(2).flatten(1).sum(1)


def psnr_from_mse(mse_sum: float, *, values_per_image: int = VALUES_PER_IMAGE) -> float:
    """PSNR in dB of a per-image summed squared error for pixels in [0, 1]: 10·log10(1 / (mse_sum / values))."""
    if mse_sum <= 0:
        return math.inf
    return 10.0 * math.log10(values_per_image / mse_sum)


@torch.no_grad()
def reconstruction_metrics(model: nn.Module, data: Split, *, batch_size: int, device: torch.device) -> dict[str, float]:
    """{"mse": mean over images of Σ (x̂ − x)² with x̂ clamped to [0, 1], "psnr": dB, "num_images"}."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data.labels), batch_size):
        x = to_float(data.images[start : start + batch_size].to(device))
        x_hat = model.decode(model.encode(x)).clamp(0.0, 1.0)
        total += squared_error_per_image(x_hat, x).double().sum().item()
        count += x.shape[0]
    mse = total / count
    return {"mse": mse, "psnr": psnr_from_mse(mse), "num_images": float(count)}


@torch.no_grad()
def reconstructions(
    model: nn.Module, images: torch.Tensor, *, batch_size: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """uint8 images (N, 3, 32, 32) → their reconstructions x̂ as float batches in [0, 1], rounded through uint8 as
    stored samples are (so reconstruction FID and sample FID see the same quantisation)."""
    model.eval()
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size].to(device))
        yield to_uint8(model.decode(model.encode(x)).clamp(0.0, 1.0)).float().div_(255.0)
