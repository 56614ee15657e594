"""Noise schedules and the sampler's timesteps (pure): x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε, t = 0 … T − 1."""

from __future__ import annotations

import math

import numpy as np
import torch


def make_betas(schedule: str, num_timesteps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """β_t, (T,) float64: 'linear' from beta_start to beta_end (DDPM: 1e-4 … 0.02, T = 1000), or Nichol & Dhariwal's
    'cosine' ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008, β clipped at 0.999."""
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    if schedule == "cosine":
        t = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {schedule!r}; use 'linear' or 'cosine'")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = Π_{s ≤ t} (1 − β_s): (T,) in (0, 1), decreasing; same dtype/device as betas."""
    return torch.cumprod(1 - betas, dim=0)


def timesteps(num_train: int, num_sample: int, spacing: str) -> list[int]:
    """The S timesteps the sampler visits, ascending, in [0, T − 1] (ermongroup/ddim's skip types).

    uniform:   t_i = i · (T // S)                     (S = T gives every step 0 … T − 1)
    quadratic: t_i = floor((i · sqrt(0.8 T) / (S − 1))²), bumped to stay strictly increasing
    """
    if spacing == "uniform":
        skip = num_train // num_sample
        return [i * skip for i in range(num_sample)]
    if spacing == "quadratic":
        raw = (np.linspace(0, np.sqrt(num_train * 0.8), num_sample) ** 2).astype(int).tolist()
        seq: list[int] = []
        for t in raw:  # small t collide after flooring; keep exactly S distinct steps
            seq.append(max(t, seq[-1] + 1) if seq else t)
        if seq[-1] >= num_train:
            raise ValueError(f"quadratic spacing cannot fit {num_sample} distinct steps in {num_train} timesteps")
        return seq
    raise ValueError(f"unknown timestep spacing {spacing!r}; use 'uniform' or 'quadratic'")
