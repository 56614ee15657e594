"""Weighted kNN accuracy on cosine similarity: a cheap representation monitor (InstDisc / MoCo demo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hybridmi.data.prepared import Split


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
    """Top-1 accuracy of a kNN vote weighted by exp(cos / T).

    train_x: (N, D), test_x: (M, D) features (any scale: they are L2-normalised here);
    labels int64 in [0, num_classes). k is capped at N.
    """
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


def knn_monitor(
    encoder: torch.nn.Module,
    train: Split,
    test: Split,
    *,
    contrastive_channels: int,
    batch_size: int,
    device: torch.device,
    k: int,
    temperature: float,
) -> float:
    """kNN accuracy of y (the contrastive half of z) with un-augmented train images as the bank.

    Leaves ``encoder`` in eval mode; uses no random numbers, so training RNG streams are untouched.
    """
    from hybridmi.eval.features import encode_split

    bank = encode_split(encoder, train, batch_size=batch_size, device=device)[:, :contrastive_channels].flatten(1)
    queries = encode_split(encoder, test, batch_size=batch_size, device=device)[:, :contrastive_channels].flatten(1)
    return knn_accuracy(
        bank.to(device),
        train.labels,
        queries.to(device),
        test.labels,
        num_classes=len(train.classes),
        k=k,
        temperature=temperature,
    )
