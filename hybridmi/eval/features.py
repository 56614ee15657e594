"""Frozen-encoder features of a split: z and its y / ŷ halves, flattened."""

from __future__ import annotations

import torch
from torch import nn

from hybridmi.data.augment import to_float
from hybridmi.data.prepared import Split


@torch.no_grad()
def encode_split(encoder: nn.Module, split: Split, *, batch_size: int, device: torch.device) -> torch.Tensor:
    """z for every image of ``split``: (N, C, 16, 16) float32 on the CPU, in batches of ``batch_size``."""
    encoder.eval()
    chunks = []
    for start in range(0, len(split.labels), batch_size):
        x = to_float(split.images[start : start + batch_size].to(device, non_blocking=True))
        chunks.append(encoder(x).float().cpu())
    return torch.cat(chunks)


def feature_views(z: torch.Tensor, *, contrastive_channels: int) -> dict[str, torch.Tensor]:
    """{"y": first channels, "yhat": the rest, "z": all}, each flattened to (N, D)."""
    c = contrastive_channels
    return {"y": z[:, :c].flatten(1), "yhat": z[:, c:].flatten(1), "z": z.flatten(1)}
