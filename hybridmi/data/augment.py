"""MoCo-v2 augmentation for 32x32 images: per-sample parameters, batched, on the tensors' own device.

Hand-written in pure torch on purpose: kornia is not among the project's packages, and every random
draw here comes from ONE explicit ``torch.Generator`` (on the images' device), so a resumed run that
restores the generator state augments bit-identically. torchvision.transforms.v2 on a batch would draw
one parameter set for the whole batch. Semantics follow torchvision's single-image transforms:

- RandomResizedCrop(32, scale=(0.2, 1), ratio=(3/4, 4/3)): 10 attempts, integer crop sizes, centre-crop
  fallback; the resize is bilinear (an affine grid + ``grid_sample``, no antialias: crops only enlarge).
- RandomHorizontalFlip(p=0.5), folded into the same affine grid.
- ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8: factors uniform in [0.6, 1.4], hue shift in [-0.1, 0.1],
  applied in a fixed order (brightness, contrast, saturation, hue) — torchvision shuffles the order.
- RandomGrayscale(p=0.2) with ITU-R 601 luma weights. Output clamped to [0, 1].

The draws and their application are separate functions (``draw_moco_params`` / ``apply_moco``,
``draw_flips`` / ``apply_flips``): a distributed run draws the whole global batch's parameters on every
rank and applies only its own rows.
"""

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


def _uniform(
    shape: tuple[int, ...], low: float, high: float, *, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """float32 uniform in [low, high) from ``generator``."""
    return low + (high - low) * torch.rand(shape, generator=generator, device=device, dtype=torch.float32)


def crop_boxes(b: int, size: int, *, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """RandomResizedCrop boxes (B, 4) = (top, left, height, width) in pixels of a size x size image."""
    area = float(size * size)
    target = area * _uniform((b, _ATTEMPTS), *CROP_SCALE, generator=generator, device=device)  # (B, 10)
    log_ratio = _uniform(
        (b, _ATTEMPTS), math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator, device=device
    )
    ratio = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(target * ratio))
    h = torch.round(torch.sqrt(target / ratio))
    ok = (w > 0) & (w <= size) & (h > 0) & (h <= size)  # (B, 10)
    first = ok.float().argmax(1)  # first valid attempt
    w = w.gather(1, first[:, None]).squeeze(1)
    h = h.gather(1, first[:, None]).squeeze(1)
    # torchvision's fallback is a centre crop at the clamped ratio; for a square image that is the full image
    w = torch.where(ok.any(1), w, torch.full_like(w, size))
    h = torch.where(ok.any(1), h, torch.full_like(h, size))
    top = torch.floor(torch.rand(b, generator=generator, device=device) * (size - h + 1))
    left = torch.floor(torch.rand(b, generator=generator, device=device) * (size - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop each image to its box (B,4 pixels), mirror where flip (B,) bool, resize back bilinearly.

    x: (B, C, H, W) float; align_corners=False, so box edge e (pixels) -> normalised 2e/W - 1; sampling
    is clamped to the box's outer pixel centres, which makes it equal torchvision's
    ``resized_crop(..., antialias=False)`` (then flipped).
    """
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
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_divisor, (maxc - g) / cr_divisor, (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV (B, 3, H, W) -> RGB by the closed form f(n) = v - v s clamp(min(k, 4 - k), 0, 1),
    k = (n + 6h) mod 6, n = 5, 3, 1 for R, G, B; equal to torchvision's sector-table _hsv2rgb."""
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
    """The random parameters of one MoCo-v2 view of a batch, one row per image; ``params[rows]`` selects images.

    Drawing them (``draw_moco_params``) and applying them (``apply_moco``) are separate, so every rank of a
    distributed run can draw the whole global batch's parameters from the same generator (one process's
    draws exactly) and apply only its own slice of them.
    """

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
    factors = torch.cat(
        [
            _uniform((b, 1), 1 - BRIGHTNESS, 1 + BRIGHTNESS, generator=generator, device=device),
            _uniform((b, 1), 1 - CONTRAST, 1 + CONTRAST, generator=generator, device=device),
            _uniform((b, 1), 1 - SATURATION, 1 + SATURATION, generator=generator, device=device),
            _uniform((b, 1), -HUE, HUE, generator=generator, device=device),
        ],
        dim=1,
    )  # (B, 4)
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


def moco_augment(x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """One MoCo-v2 view per image. x: float (B, 3, 32, 32) in [0, 1] -> same shape/dtype/device, in [0, 1].

    Every random number comes from ``generator``, which must live on x's device; a fixed number of
    draws per call (independent of the values), so generator state alone determines the output.
    """
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"moco_augment expects float (B, 3, H, W) images, got {x.dtype} {tuple(x.shape)}")
    if x.shape[2] != x.shape[3]:
        raise ValueError(f"moco_augment expects square images, got {x.shape[2]}x{x.shape[3]}")
    if generator.device.type != x.device.type or generator.device.index not in (None, x.device.index):
        raise ValueError(f"generator is on {generator.device} but images are on {x.device}")
    return apply_moco(x, draw_moco_params(x.shape[0], x.shape[-1], generator=generator, device=x.device))


def draw_flips(b: int, *, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B,) bool: which of b images ``apply_flips`` mirrors (probability 1/2 each, one draw per image)."""
    return torch.rand(b, generator=generator, device=device) < FLIP_P


def apply_flips(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) with the images where ``flip`` (B,) is true mirrored left-right."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def flip_augment(x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2: the augmentation of a plain autoencoder.

    x: (B, C, H, W) → same shape/dtype/device; one draw per image from ``generator`` (on x's device).
    """
    if x.ndim != 4:
        raise ValueError(f"flip_augment expects (B, C, H, W) images, got shape {tuple(x.shape)}")
    return apply_flips(x, draw_flips(x.shape[0], generator=generator, device=x.device))
