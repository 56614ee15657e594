"""Images from the trained latent DDIM: the sampler checked against its latents, and decoded sample batches.

The sample stage is the one caller: it draws a run's samples once and stores them (hybridmi/eval/samples.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch

from hybridmi.eval.latents import load_stats
from hybridmi.models.serialize import load_autoencoder
from hybridmi.train.ddim import DDIMModel, load_ddim, sample_latents


def load_sampler(
    *, ddim: Path, latents: Path, model: Path, device: torch.device | str
) -> tuple[DDIMModel, torch.nn.Module]:
    """The DDIM (EMA weights) checked against the latents artifact's standardisation, and the frozen autoencoder.

    ddim, latents, model: the ddim, latents and model artifact directories. ValueError when the DDIM was
    trained on latents with other statistics than ``latents/stats.json``.
    """
    sampler = load_ddim(ddim, device=device)
    mean, std = load_stats(Path(latents) / "stats.json")
    if not (torch.allclose(mean, sampler.mean.cpu()) and torch.allclose(std, sampler.std.cpu())):
        raise ValueError(
            f"the DDIM in {ddim} was trained on latents with other statistics than {Path(latents) / 'stats.json'}"
        )
    return sampler, load_autoencoder(Path(model) / "model.pt", device=device)


@torch.no_grad()
def decoded_samples(
    ddim: DDIMModel,
    autoencoder: torch.nn.Module,
    num: int,
    *,
    batch_size: int,
    steps: int,
    eta: float,
    spacing: str,
    seed: int,
) -> Iterator[torch.Tensor]:
    """Batches of decoded DDIM samples (B ≤ batch_size, 3, 32, 32) in [0, 1] on the model's device, num in all.

    One generator seeded with ``seed`` feeds every batch, so (seed, batch_size) fix the whole sequence.
    Sampling and decoding run in float32 (no autocast): bf16's 8-bit significand, compounded over the
    sampler's steps, shifts the samples that FID measures.
    """
    generator = torch.Generator().manual_seed(seed)
    for i in range(math.ceil(num / batch_size)):
        b = min(batch_size, num - i * batch_size)
        z = sample_latents(ddim, b, steps=steps, eta=eta, spacing=spacing, generator=generator, amp=None)
        yield autoencoder.decode(z.float()).float().clamp(0, 1)
