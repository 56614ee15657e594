"""The DDIM sampler (Song et al., 2021, eq. 12) as one pure step and one short loop (after ermongroup/ddim
``generalized_steps``: no x0 clipping; η = 0 deterministic, η = 1 with S = T ancestral DDPM)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from hybridmi.diffusion.schedule import timesteps

EpsModel = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, ...), t (B,) long) -> ε̂ like x_t


def ddim_step(
    x_t: Tensor, eps: Tensor, a_t: Tensor | float, a_prev: Tensor | float, *, eta: float, noise: Tensor | None
) -> Tensor:
    """One DDIM update x_t → x_{t_prev} given ε̂ = eps (same shape as x_t).

    a_t = ᾱ_t, a_prev = ᾱ_{t_prev} (1 for the final step); both scalars or broadcastable tensors.
        x̂_0  = (x_t − sqrt(1 − a_t) ε̂) / sqrt(a_t)
        σ    = η · sqrt((1 − a_prev)/(1 − a_t) · (1 − a_t/a_prev))
        x_prev = sqrt(a_prev) x̂_0 + sqrt(1 − a_prev − σ²) ε̂ + σ · noise
    ``noise`` (standard normal, like x_t) may be None only when η = 0.
    """
    if eta > 0 and noise is None:
        raise ValueError(f"eta {eta} > 0 needs a noise tensor")
    a_t = torch.as_tensor(a_t, dtype=x_t.dtype, device=x_t.device)
    a_prev = torch.as_tensor(a_prev, dtype=x_t.dtype, device=x_t.device)
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
    x_prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        x_prev = x_prev + sigma * noise
    return x_prev


@torch.no_grad()
def ddim_sample(
    model: EpsModel,
    shape: tuple[int, ...],
    *,
    alphas_cumprod: torch.Tensor,
    steps: int,
    eta: float,
    spacing: str = "uniform",
    generator: torch.Generator,
) -> torch.Tensor:
    """x_T ~ N(0, I) of ``shape`` → S = ``steps`` DDIM updates → x_0 (float32); all noise comes from ``generator``."""
    device = alphas_cumprod.device
    seq = timesteps(len(alphas_cumprod), steps, spacing)
    abar = alphas_cumprod.to(device=device, dtype=torch.float32)
    one = torch.ones((), dtype=torch.float32, device=device)

    def randn() -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=generator.device).to(device)

    x = randn()
    prev_seq = [-1] + seq[:-1]
    for t, t_prev in zip(reversed(seq), reversed(prev_seq)):
        t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps = model(x, t_batch).float()
        a_prev = abar[t_prev] if t_prev >= 0 else one
        x = ddim_step(x, eps, abar[t], a_prev, eta=eta, noise=randn() if eta > 0 else None)
    return x
