"""Weighted kNN accuracy on cosine similarity: a cheap representation monitor (InstDisc / MoCo demo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
) -> float:
    """Top-1 accuracy of a kNN vote weighted by exp(cos / T) on features (N, D), (M, D); k is capped at N."""
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"feature widths differ: train {train_x.shape[1]} vs test {test_x.shape[1]}")
    bank = F.normalize(train_x.float(), dim=1)
    k = min(k, bank.shape[0])
    correct = 0
    for start in range(0, test_x.shape[0], batch_size):
        query = F.normalize(test_x[start : start + batch_size].float().to(bank.device), dim=1)
        sim, idx = (query @ bank.T).topk(k, dim=1)  # (b, k)
        weights = (sim / temperature).exp()
        votes = torch.zeros(query.shape[0], num_classes, device=bank.device)
        votes.scatter_add_(1, train_y.to(bank.device)[idx], weights)
        correct += (votes.argmax(1).cpu() == test_y[start : start + batch_size].cpu()).sum().item()
    return correct / test_x.shape[0]
