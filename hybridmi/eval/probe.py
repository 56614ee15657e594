"""Linear probe: multinomial logistic regression on frozen, standardised features, on the device."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float  # top-1 on the test split, in [0, 1]
    weight_decay: float  # the candidate picked on the held-out part of train
    val_accuracy: dict[float, float]  # held-out accuracy of every candidate
    confusion: torch.Tensor  # (num_classes, num_classes) int64, rows = true class, cols = predicted


def standardise(train_x: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Zero mean / unit variance per feature with train statistics applied to every tensor (N, D)."""
    mean = train_x.mean(0, keepdim=True)
    std = train_x.std(0, keepdim=True).clamp_min(1e-6)
    return tuple((x - mean) / std for x in (train_x, *others))


def fit_logistic(
    x: Tensor, y: Tensor, *, num_classes: int, weight_decay: float, epochs: int, batch_size: int, lr: float, seed: int
) -> torch.nn.Linear:
    """Minimise CE + weight_decay · ‖W‖² with Adam and a cosine learning rate; x (N, D) on its device."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    layer = torch.nn.Linear(x.shape[1], num_classes, device=x.device)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.01)
        layer.bias.zero_()
    optimizer = torch.optim.Adam(layer.parameters(), lr=lr)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen).to(x.device)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(layer(x[idx]), y[idx]) + weight_decay * layer.weight.pow(2).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return layer


@torch.no_grad()
def _predict(layer: torch.nn.Linear, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    return torch.cat([layer(x[s : s + batch_size]).argmax(1) for s in range(0, x.shape[0], batch_size)])


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    num_classes: int,
    weight_decays: list[float],
    val_fraction: float = 0.1,
    epochs: int = 100,
    batch_size: int = 1024,
    lr: float = 1e-2,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ProbeResult:
    """Pick the weight decay on held-out train, refit on train, score on test; features (N, D) are standardised."""
    device = torch.device(device)
    train_x, test_x = standardise(train_x.float().to(device), test_x.float().to(device))
    train_y, test_y = train_y.to(device), test_y.to(device)
    order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(seed)).to(device)
    n_val = max(1, int(round(val_fraction * train_x.shape[0])))
    val_idx, fit_idx = order[:n_val], order[n_val:]
    fit = dict(num_classes=num_classes, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    val_accuracy = {}
    for wd in weight_decays:
        layer = fit_logistic(train_x[fit_idx], train_y[fit_idx], weight_decay=wd, **fit)
        val_accuracy[wd] = (_predict(layer, train_x[val_idx]) == train_y[val_idx]).float().mean().item()
    best = max(weight_decays, key=lambda wd: (val_accuracy[wd], -wd))
    layer = fit_logistic(train_x, train_y, weight_decay=best, **fit)
    pred = _predict(layer, test_x)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    confusion.index_put_((test_y.cpu(), pred.cpu()), torch.ones_like(pred.cpu()), accumulate=True)
    return ProbeResult((pred == test_y).float().mean().item(), best, val_accuracy, confusion)
