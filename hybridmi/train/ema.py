"""Exponential moving average of a model's weights (the DDIM samples with the EMA copy)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def ema_decay_at(step: int, *, decay: float, warmup: bool) -> float:
    """The decay used for update number ``step`` (0-based): min(decay, (1 + n)/(10 + n)) with warm-up.

    The warm-up (as in TensorFlow's ExponentialMovingAverage with num_updates) lets short runs get a
    useful average instead of one stuck at the initial weights when decay = 0.9999.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay {decay} must be in [0, 1)")
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


class EMA:
    """θ_ema ← d·θ_ema + (1 − d)·θ after each optimiser step; buffers (e.g. norm statistics) are copied.

    ``module`` is a frozen deep copy of the model in eval mode, on the model's device.
    """

    def __init__(self, model: nn.Module, *, decay: float, warmup: bool = True) -> None:
        ema_decay_at(0, decay=decay, warmup=warmup)  # validates decay
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Fold the model's current weights into the average (one foreach lerp); returns the decay used."""
        d = ema_decay_at(self.num_updates, decay=self.decay, warmup=self.warmup)
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
