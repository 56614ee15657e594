"""The hybrid objective's two terms and their mix, as pure functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over each image's C·H·W values, averaged over the batch (the paper's MSE unit)."""
    if x_hat.shape != x.shape or x.dim() < 2:
        raise ValueError(
            f"reconstruction_loss needs equal (B, ...) shapes, got {tuple(x_hat.shape)} and {tuple(x.shape)}"
        )
    per_image = (x_hat.float() - x.float()).square().flatten(1).sum(dim=1)  # B
    return per_image.mean()


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """InfoNCE with a queue of negatives (MoCo): cross-entropy of the positive among 1+K candidates."""
    if temperature <= 0:
        raise ValueError(f"info_nce temperature {temperature} must be > 0")
    if q.dim() != 2 or q.shape != k.shape:
        raise ValueError(f"info_nce needs q and k of equal (N, D) shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    if queue.dim() != 2 or queue.shape[0] != q.shape[1]:
        raise ValueError(f"info_nce queue must be (D={q.shape[1]}, K), got {tuple(queue.shape)}")
    with torch.autocast(device_type=q.device.type, enabled=False):
        q, k, queue = q.float(), k.float(), queue.float()
        l_pos = (q * k).sum(dim=1, keepdim=True)  # Nx1
        l_neg = q @ queue  # NxK
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # Nx(1+K)
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, labels)


def hybrid_loss(recon: torch.Tensor | None, nce: torch.Tensor | None, *, alpha: float) -> torch.Tensor:
    """α · recon + (1 − α) · nce, for α in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"hybrid_loss alpha {alpha} is not in [0, 1]")
    if alpha < 1.0 and nce is None:
        raise ValueError(f"hybrid_loss alpha {alpha} needs the InfoNCE term, got None")
    if alpha > 0.0 and recon is None:
        raise ValueError(f"hybrid_loss alpha {alpha} needs the reconstruction term, got None")
    if alpha == 0.0:
        return nce
    if alpha == 1.0:
        return recon
    return alpha * recon + (1.0 - alpha) * nce
