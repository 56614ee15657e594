"""PNG figures: interpolations of part z, y or ŷ of the latents (paper Figures 2-4), reconstructions, sample grids."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

PARTS = ("z", "y", "yhat")


def interpolate_latents(
    z_a: torch.Tensor, z_b: torch.Tensor, *, steps: int, part: str, contrastive_channels: int
) -> torch.Tensor:
    """z_a, z_b (P, C, H, W) → (P, steps, C, H, W): row p moves from z_a[p] to z_b[p] in the chosen part."""
    if part not in PARTS:
        raise ValueError(f"unknown interpolation part {part!r}; use one of {', '.join(PARTS)}")
    if steps < 2:
        raise ValueError(f"interpolation steps {steps} must be at least 2")
    if z_a.shape != z_b.shape or z_a.dim() != 4:
        raise ValueError(
            f"latent pairs must share one (P, C, H, W) shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if not 0 < contrastive_channels < z_a.shape[1]:
        raise ValueError(f"contrastive_channels {contrastive_channels} must be between 1 and {z_a.shape[1] - 1}")
    w = torch.linspace(0, 1, steps, dtype=z_a.dtype, device=z_a.device)[None, :, None, None, None]
    mixed = (1 - w) * z_a[:, None] + w * z_b[:, None]  # P x steps x C x H x W
    out = z_a[:, None].expand_as(mixed).clone()
    channels = {"z": slice(None), "y": slice(0, contrastive_channels), "yhat": slice(contrastive_channels, None)}[part]
    out[:, :, channels] = mixed[:, :, channels]
    return out


@torch.no_grad()
def interpolation_images(
    model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, *, steps: int, part: str, contrastive_channels: int
) -> torch.Tensor:
    """Decoded interpolations: x_a, x_b (P, 3, 32, 32) in [0, 1] → (P · steps, 3, 32, 32) in [0, 1], row-major."""
    z = interpolate_latents(
        model.encode(x_a), model.encode(x_b), steps=steps, part=part, contrastive_channels=contrastive_channels
    )
    return model.decode(z.flatten(0, 1)).float().clamp(0, 1)


@torch.no_grad()
def reconstruction_images(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x (N, 3, 32, 32) in [0, 1] → (2N, 3, 32, 32): original, reconstruction, original, … (pairs side by side)."""
    x_hat = model.decode(model.encode(x)).float().clamp(0, 1)
    return torch.stack([x.float(), x_hat], dim=1).flatten(0, 1)


def save_grid(images: torch.Tensor, path: str | Path, *, ncols: int) -> Path:
    """Write images (N, 3, H, W) in [0, 1] as a PNG grid, ``ncols`` columns, 2-pixel black padding: the bytes
    torchvision's ``save_image(images, path, nrow=ncols, padding=2)`` writes, without importing torchvision."""
    if images.dim() != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"grid images must be a non-empty (N, 3, H, W) tensor, got {tuple(images.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = images.detach().float().cpu().clamp(0, 1)
    n, _, h, w = images.shape
    pad, cols = (0, 1) if n == 1 else (2, min(ncols, n))  # make_grid returns a single image unpadded
    rows = -(-n // cols)
    grid = torch.zeros(3, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i, image in enumerate(images):
        top, left = (i // cols) * (h + pad) + pad, (i % cols) * (w + pad) + pad
        grid[:, top : top + h, left : left + w] = image
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def pick_pairs(n: int, pairs: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (a, b) of ``pairs`` distinct image pairs out of n, drawn from ``seed`` (2·pairs ≤ n)."""
    if 2 * pairs > n:
        raise ValueError(f"{pairs} interpolation pairs need {2 * pairs} images, the split has {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: 2 * pairs]
    return order[:pairs], order[pairs:]


@torch.no_grad()
def interpolation_change(images: torch.Tensor, *, steps: int) -> float:
    """Mean |x_{w=1} − x_{w=0}| per pixel over the rows of a (P · steps, 3, H, W) interpolation (~0: part ignored)."""
    rows = images.reshape(-1, steps, *images.shape[1:])
    return float((rows[:, -1] - rows[:, 0]).abs().mean())
