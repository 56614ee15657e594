"""Latent files of the frozen encoder and their per-channel standardisation (z − mean) / std (as jiamings/d2c)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from hybridmi.runtime import atomic_torch_save, write_json

FORMAT = 1
KIND = "hybridmi-latents"
DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass
class LatentSet:
    latents: torch.Tensor  # (N, C, H, W) float16/float32, CPU
    labels: torch.Tensor  # (N,) int64
    flip: bool  # True: rows N/2 … N − 1 are the horizontal flips of rows 0 … N/2 − 1
    source_checksum: str  # checksum of the image split they were encoded from


@torch.no_grad()
def extract_latents(
    model: torch.nn.Module,  # with .encode(x)
    images: Sequence[torch.Tensor] | torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    flip: bool = False,
    dtype: torch.dtype = torch.float16,
) -> torch.Tensor:
    """uint8 images (N, 3, 32, 32) → latents (N·(1 + flip), C, 16, 16) on the CPU; row N + i: flip of row i."""
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be >= 1")
    n = len(images)
    if n == 0:
        raise ValueError("no images to encode")
    out: torch.Tensor | None = None
    views = (False, True) if flip else (False,)
    for start in range(0, n, batch_size):
        chunk = images[start : start + batch_size]
        if chunk.dtype != torch.uint8 or chunk.dim() != 4:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {chunk.dtype} {tuple(chunk.shape)}")
        x = chunk.to(device, non_blocking=True).float().div_(255.0)
        for k, flipped in enumerate(views):
            z = model.encode(x.flip(-1) if flipped else x)
            if out is None:
                out = torch.empty((n * len(views), *z.shape[1:]), dtype=dtype)
            out[k * n + start : k * n + start + len(z)] = z.to("cpu", dtype)
    return out


def channel_stats(latents: torch.Tensor, *, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population std over (N, H, W): (N, C, H, W) → two (C,) float64, summed batch-wise."""
    if latents.dim() != 4 or len(latents) == 0:
        raise ValueError(f"latents must be a non-empty (N, C, H, W) tensor, got shape {tuple(latents.shape)}")
    total = torch.zeros(latents.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, len(latents), batch_size):
        z = latents[start : start + batch_size].to(torch.float64)
        total += z.sum(dim=(0, 2, 3)).cpu()
        total_sq += z.square().sum(dim=(0, 2, 3)).cpu()
    count = latents.shape[0] * latents.shape[2] * latents.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp(min=0).sqrt()
    if bool((std == 0).any()):
        raise ValueError(
            f"latent channels {torch.nonzero(std == 0).flatten().tolist()} are constant (std 0); cannot standardise"
        )
    return mean, std


def _per_channel(v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    if v.shape != (z.shape[1],):
        raise ValueError(f"statistics of shape {tuple(v.shape)} do not match {z.shape[1]} latent channels")
    return v.to(device=z.device, dtype=z.dtype)[None, :, None, None]


def standardise(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(z − mean) / std per channel: z (B, C, H, W), mean/std (C,) → (B, C, H, W) in z's dtype/device."""
    return (z - _per_channel(mean, z)) / _per_channel(std, z)


def destandardise(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Inverse of ``standardise``: z · std + mean per channel."""
    return z * _per_channel(std, z) + _per_channel(mean, z)


def save_latents(path: str | Path, latent_set: LatentSet) -> Path:
    """Write a self-describing latent file {format, kind, latents, labels, flip, source_checksum} atomically."""
    if len(latent_set.latents) != len(latent_set.labels):
        raise ValueError(f"{len(latent_set.latents)} latents but {len(latent_set.labels)} labels")
    return atomic_torch_save({"format": FORMAT, "kind": KIND, **vars(latent_set)}, path)


def load_latents(path: str | Path) -> LatentSet:
    """Read what ``save_latents`` wrote; clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latent file {path} does not exist")
    payload: Any = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("kind") != KIND or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {KIND!r} file of format {FORMAT}")
    return LatentSet(payload["latents"], payload["labels"], bool(payload["flip"]), str(payload["source_checksum"]))


def save_stats(path: str | Path, mean: torch.Tensor, std: torch.Tensor, *, count: int) -> Path:
    """Write per-channel mean/std (float64, exact through JSON's repr floats) and the latent count."""
    return write_json(path, {"mean": mean.double().tolist(), "std": std.double().tolist(), "count": int(count)})


def load_stats(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) as (C,) float64 tensors from ``save_stats``'s JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latent statistics {path} do not exist")
    payload = json.loads(path.read_text())
    mean, std = (torch.tensor(payload[key], dtype=torch.float64) for key in ("mean", "std"))
    if mean.shape != std.shape or bool((std <= 0).any()):
        raise ValueError(
            f"{path}: mean/std shapes {tuple(mean.shape)}/{tuple(std.shape)} differ or a std is not positive"
        )
    return mean, std
