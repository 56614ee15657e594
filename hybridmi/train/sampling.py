"""Images from the trained latent DDIM for the sample stage: the sampler checked against its latents, decoded."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from hybridmi.eval.latents import load_stats
from hybridmi.models.serialize import load_autoencoder
from hybridmi.train.ddim import DDIMModel, load_ddim, sample_latents


def load_sampler(*, ddim: Path, latents: Path, model: Path, device: torch.device | str) -> tuple[DDIMModel, nn.Module]:
    """The DDIM (EMA weights) of the ddim artifact, checked against ``latents/stats.json``, and the autoencoder."""
    sampler = load_ddim(ddim, device=device)
    mean, std = load_stats(Path(latents) / "stats.json")
    if not (torch.allclose(mean, sampler.mean.cpu()) and torch.allclose(std, sampler.std.cpu())):
        raise ValueError(
            f"the DDIM in {ddim} was trained on latents with other statistics than {Path(latents) / 'stats.json'}"
        )
    return sampler, load_autoencoder(Path(model) / "model.pt", device=device)


@torch.no_grad()
def decoded_samples(
    ddim: DDIMModel, decoder: nn.Module, num: int, *, batch_size: int, steps: int, eta: float, spacing: str, seed: int
) -> Iterator[torch.Tensor]:
    """``num`` decoded DDIM samples in batches (B ≤ batch_size, 3, 32, 32) in [0, 1], float32, one generator."""
    generator = torch.Generator().manual_seed(seed)
    for i in range(math.ceil(num / batch_size)):
        b = min(batch_size, num - i * batch_size)
        z = sample_latents(ddim, b, steps=steps, eta=eta, spacing=spacing, generator=generator, amp=None)
        yield decoder.decode(z.float()).float().clamp(0, 1)
