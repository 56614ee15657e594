"""Noise schedules (β_t, ᾱ_t) and the sampler's timestep subsequences (pure functions).

Notation follows DDPM/DDIM: x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε, ᾱ_t = Π_{s ≤ t} (1 − β_s),
t = 0 … T − 1 (0-based, as in ermongroup/ddim).
"""

from __future__ import annotations

import math

import numpy as np
import torch

SPACINGS = ("uniform", "quadratic")


def linear_betas(num_timesteps: int, *, beta_start: float, beta_end: float) -> torch.Tensor:
    """β_t evenly spaced from beta_start to beta_end: (T,) float64 (DDPM: 1e-4 … 0.02, T = 1000)."""
    if num_timesteps < 2:
        raise ValueError(f"num_timesteps {num_timesteps} must be at least 2")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"linear schedule needs 0 < beta_start {beta_start} <= beta_end {beta_end} < 1")
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, *, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), β clipped at max_beta; (T,) float64."""
    if num_timesteps < 2:
        raise ValueError(f"num_timesteps {num_timesteps} must be at least 2")
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def make_betas(schedule: str, num_timesteps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """β_t for schedule 'linear' or 'cosine': (T,) float64."""
    if schedule == "linear":
        return linear_betas(num_timesteps, beta_start=beta_start, beta_end=beta_end)
    if schedule == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"unknown beta schedule {schedule!r}; use 'linear' or 'cosine'")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = Π_{s ≤ t} (1 − β_s): (T,) in (0, 1), decreasing; same dtype/device as betas."""
    if betas.dim() != 1 or not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError(f"betas must be a 1-d tensor with values in (0, 1), got shape {tuple(betas.shape)}")
    return torch.cumprod(1 - betas, dim=0)


def timesteps(num_train: int, num_sample: int, spacing: str) -> list[int]:
    """The S timesteps the sampler visits, ascending, in [0, T − 1] (ermongroup/ddim's skip types).

    uniform:   t_i = i · (T // S)                     (S = T gives every step 0 … T − 1)
    quadratic: t_i = floor((i · sqrt(0.8 T) / (S − 1))²), bumped to stay strictly increasing
    """
    if not 1 <= num_sample <= num_train:
        raise ValueError(f"sampling steps {num_sample} must be between 1 and the {num_train} training timesteps")
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
    raise ValueError(f"unknown timestep spacing {spacing!r}; use one of {', '.join(SPACINGS)}")
