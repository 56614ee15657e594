"""MoCo-v2 augmentation of 32x32 image batches: per-sample parameters, drawn from one explicit generator."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

CROP_SCALE = (0.2, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
FLIP_P = 0.5
JITTER_P, BRIGHTNESS, CONTRAST, SATURATION, HUE = 0.8, 0.4, 0.4, 0.4, 0.1
GRAY_P = 0.2
_ATTEMPTS = 10
_LUMA = (0.2989, 0.587, 0.114)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (any shape) -> float32 in [0, 1] on the same device."""
    if x.dtype != torch.uint8:
        raise ValueError(f"to_float expects uint8 images, got {x.dtype}")
    return x.float().div_(255.0)


def _uniform(shape: tuple[int, ...], low: float, high: float, *, generator: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=device, dtype=torch.float32)


def crop_boxes(b: int, size: int, *, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """RandomResizedCrop boxes (B, 4) = (top, left, height, width) in pixels of a size x size image."""
    target = size * size * _uniform((b, _ATTEMPTS), *CROP_SCALE, generator=generator, device=device)  # (B, 10)
    log_ratio = _uniform((b, _ATTEMPTS), *map(math.log, CROP_RATIO), generator=generator, device=device)
    ratio = torch.exp(log_ratio)
    w, h = torch.round(torch.sqrt(target * ratio)), torch.round(torch.sqrt(target / ratio))
    ok = (w > 0) & (w <= size) & (h > 0) & (h <= size)  # (B, 10)
    first = ok.float().argmax(1)[:, None]  # first valid attempt
    # torchvision's fallback is a centre crop at the clamped ratio; for a square image that is the full image
    w = torch.where(ok.any(1), w.gather(1, first).squeeze(1), size)
    h = torch.where(ok.any(1), h.gather(1, first).squeeze(1), size)
    top = torch.floor(torch.rand(b, generator=generator, device=device) * (size - h + 1))
    left = torch.floor(torch.rand(b, generator=generator, device=device) * (size - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop each image to its box (B,4 pixels), mirror where flip (B,) bool, resize back bilinearly."""
    b, _, height, width = x.shape
    top, left, h, w = boxes.float().unbind(1)
    sx, sy = w / width, h / height
    cx = (2 * left + w) / width - 1  # box centre, normalised
    cy = (2 * top + h) / height - 1
    sx = torch.where(flip, -sx, sx)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, x.shape[1], height, width], align_corners=False)  # (B, H, W, 2) as (x, y)
    # like torchvision's resize of the cropped image: never blend in pixels outside the box
    lo = torch.stack([(2 * left + 1) / width - 1, (2 * top + 1) / height - 1], 1)[:, None, None]
    hi = torch.stack([(2 * (left + w) - 1) / width - 1, (2 * (top + h) - 1) / height - 1], 1)[:, None, None]
    grid = torch.minimum(torch.maximum(grid, lo), hi).to(x.dtype)  # fp32 maths, x's dtype
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of RGB x (B, 3, H, W)."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's _blend: factor * x + (1 - factor) * other, clamped to [0, 1]; factor (B,)."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """torchvision's _rgb2hsv for a batch: (B, 3, H, W) in [0, 1] -> h, s, v each in [0, 1]."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    eqc, cr = maxc == minc, maxc - minc
    s = cr / torch.where(eqc, 1.0, maxc)
    rc, gc, bc = ((maxc - c) / torch.where(eqc, 1.0, cr) for c in (r, g, b))
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV (B, 3, H, W) -> RGB: f(n) = v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6, n = 5, 3, 1 for R, G, B
    (equal to torchvision's sector-table _hsv2rgb)."""
    h, s, v = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h, 6.0)  # (B, 3, H, W)
    return v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def color_jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation, hue with per-sample factors (B, 4) = (b, c, s, hue shift)."""
    brightness, contrast, saturation, hue = factors.to(x.dtype).unbind(1)
    x = _blend(x, torch.zeros_like(x), brightness)
    x = _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), contrast)
    x = _blend(x, grayscale(x), saturation)
    hsv = _rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + hue.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


@dataclass(frozen=True)
class MocoViewParams:
    """The random parameters of one MoCo-v2 view of a batch, one row per image; ``params[rows]`` selects images."""

    boxes: torch.Tensor  # (B, 4) crop boxes (top, left, height, width) in pixels
    flip: torch.Tensor  # (B,) bool
    jitter_on: torch.Tensor  # (B,) bool
    factors: torch.Tensor  # (B, 4) brightness, contrast, saturation factors and hue shift
    gray_on: torch.Tensor  # (B,) bool

    def __getitem__(self, rows: slice) -> "MocoViewParams":
        return MocoViewParams(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def draw_moco_params(b: int, size: int, *, generator: torch.Generator, device: torch.device) -> MocoViewParams:
    """Parameters of one MoCo-v2 view for b images of size x size: a fixed number of draws from ``generator``."""
    boxes = crop_boxes(b, size, generator=generator, device=device)
    flip = torch.rand(b, generator=generator, device=device) < FLIP_P
    jitter_on = torch.rand(b, generator=generator, device=device) < JITTER_P
    bounds = [(1 - s, 1 + s) for s in (BRIGHTNESS, CONTRAST, SATURATION)] + [(-HUE, HUE)]
    factors = torch.cat([_uniform((b, 1), *lh, generator=generator, device=device) for lh in bounds], dim=1)  # (B, 4)
    gray_on = torch.rand(b, generator=generator, device=device) < GRAY_P
    return MocoViewParams(boxes=boxes, flip=flip, jitter_on=jitter_on, factors=factors, gray_on=gray_on)


def apply_moco(x: torch.Tensor, params: MocoViewParams) -> torch.Tensor:
    """The view of float images x (B, 3, H, W) in [0, 1] given by ``params`` (B rows) → same shape, in [0, 1]."""
    if params.boxes.shape[0] != x.shape[0]:
        raise ValueError(f"apply_moco: {params.boxes.shape[0]} parameter rows for {x.shape[0]} images")
    out = resized_crop(x, params.boxes, params.flip)
    out = torch.where(params.jitter_on.view(-1, 1, 1, 1), color_jitter(out, params.factors), out)
    out = torch.where(params.gray_on.view(-1, 1, 1, 1), grayscale(out).expand_as(out), out)
    return out.clamp(0, 1)


def draw_flips(b: int, *, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B,) bool: which of b images ``apply_flips`` mirrors (probability 1/2 each, one draw per image)."""
    return torch.rand(b, generator=generator, device=device) < FLIP_P


def apply_flips(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) with the images where ``flip`` (B,) is true mirrored left-right."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
