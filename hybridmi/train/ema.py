"""Exponential moving average of a model's weights (the DDIM samples with the EMA copy)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """θ_ema ← d·θ_ema + (1 − d)·θ after each optimiser step; buffers are copied; ``module``: a frozen eval copy."""

    def __init__(self, model: nn.Module, *, decay: float, warmup: bool = True) -> None:
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Fold the model's weights into the average (one foreach lerp); returns the decay used: with warm-up
        min(decay, (1 + n)/(10 + n)) at update n, as TensorFlow's EMA."""
        n = self.num_updates
        d = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
        params, ema_params = list(model.parameters()), list(self.module.parameters())
        buffers, ema_buffers = list(model.buffers()), list(self.module.buffers())
        if len(params) != len(ema_params) or len(buffers) != len(ema_buffers):
            raise ValueError("EMA.update: the model does not have the averaged module's parameters and buffers")
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - d)
        if buffers:
            torch._foreach_copy_(ema_buffers, buffers)
        self.num_updates += 1
        return d

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": self.module.state_dict(),
            "num_updates": self.num_updates,
            "decay": self.decay,
            "warmup": self.warmup,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
