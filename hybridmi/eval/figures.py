"""PNG figures: latent interpolations (paper Figures 2-4), reconstructions, DDIM samples.

Interpolation between the latents z_a = f(x_a) and z_b = f(x_b) of two test images, at weights
w = 0 … 1 toward b (the paper writes z_t = t z_0 + (1 − t) z_1):
    part "z":    z_w = (1 − w) z_a + w z_b
    part "y":    z_w = [(1 − w) y_a + w y_b, ŷ_a]     (ŷ fixed)
    part "yhat": z_w = [y_a, (1 − w) ŷ_a + w ŷ_b]     (y fixed)
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torchvision.utils import save_image

PARTS = ("z", "y", "yhat")
PADDING = 2  # pixels between grid cells (torchvision's default)


class Autoencoder(Protocol):
    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


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
    model: Autoencoder, x_a: torch.Tensor, x_b: torch.Tensor, *, steps: int, part: str, contrastive_channels: int
) -> torch.Tensor:
    """Decoded interpolations: x_a, x_b (P, 3, 32, 32) in [0, 1] → (P · steps, 3, 32, 32) in [0, 1], row-major."""
    z = interpolate_latents(
        model.encode(x_a), model.encode(x_b), steps=steps, part=part, contrastive_channels=contrastive_channels
    )
    return model.decode(z.flatten(0, 1)).float().clamp(0, 1)


@torch.no_grad()
def reconstruction_images(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """x (N, 3, 32, 32) in [0, 1] → (2N, 3, 32, 32): original, reconstruction, original, … (pairs side by side)."""
    x_hat = model.decode(model.encode(x)).float().clamp(0, 1)
    return torch.stack([x.float(), x_hat], dim=1).flatten(0, 1)


def save_grid(images: torch.Tensor, path: str | Path, *, ncols: int) -> Path:
    """Write images (N, 3, H, W) in [0, 1] as a PNG grid with ``ncols`` columns and 2-pixel padding.

    Pixel size: width = ncols·(W + 2) + 2, height = ceil(N / ncols)·(H + 2) + 2.
    """
    if images.dim() != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"grid images must be a non-empty (N, 3, H, W) tensor, got {tuple(images.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().float().cpu().clamp(0, 1), path, nrow=ncols, padding=PADDING)
    return path


def grid_size(n: int, *, ncols: int, height: int = 32, width: int = 32) -> tuple[int, int]:
    """(width, height) in pixels of ``save_grid``'s PNG for n images (as PIL reports Image.size)."""
    cols = min(ncols, n)
    rows = -(-n // cols)
    return cols * (width + PADDING) + PADDING, rows * (height + PADDING) + PADDING


def pick_pairs(n: int, pairs: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (a, b) of ``pairs`` distinct image pairs out of n, drawn from ``seed`` (2·pairs ≤ n)."""
    if 2 * pairs > n:
        raise ValueError(f"{pairs} interpolation pairs need {2 * pairs} images, the split has {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: 2 * pairs]
    return order[:pairs], order[pairs:]


@torch.no_grad()
def interpolation_change(images: torch.Tensor, *, steps: int) -> float:
    """Mean |x_{w=1} − x_{w=0}| per pixel over the rows of a (P · steps, 3, H, W) interpolation.

    A part the decoder ignores gives ~0 (the paper's observation for y)."""
    rows = images.reshape(-1, steps, *images.shape[1:])
    return float((rows[:, -1] - rows[:, 0]).abs().mean())
