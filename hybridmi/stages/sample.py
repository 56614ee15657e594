"""Stage sample: DDIM-sample latents (EMA weights), decode them, write a uint8 tensor file and a PNG grid.

Output ``samples/``: samples.pt ({"images": uint8 (N, 3, 32, 32), "seed", "steps", "eta", "spacing"})
with N = cfg.sampling.saved_samples, and samples.png (the first cfg.figures.grid_samples).
Sampling runs in float32 whatever train.precision says: bf16's 8-bit significand, compounded over the
sampler's steps, shifts the samples that FID measures.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch

from hybridmi.config import Config
from hybridmi.eval.figures import save_grid
from hybridmi.eval.latents import load_stats
from hybridmi.models.serialize import load_autoencoder
from hybridmi.runtime import atomic_torch_save, choose_device
from hybridmi.stages.common import finish_output
from hybridmi.train.ddim import DDIMModel, load_ddim, sample_latents

INPUTS = ("ddim", "latents", "model")
OUTPUTS = ("samples",)


def load_sampler(cfg: Config, inputs: dict[str, Path], device: torch.device) -> tuple[DDIMModel, torch.nn.Module]:
    """The DDIM (EMA weights) with the latents artifact's standardisation, and the frozen autoencoder."""
    ddim = load_ddim(inputs["ddim"], device=device)
    mean, std = load_stats(inputs["latents"] / "stats.json")
    if not (torch.allclose(mean, ddim.mean.cpu()) and torch.allclose(std, ddim.std.cpu())):
        raise ValueError(f"the DDIM in {inputs['ddim']} was trained on latents with other statistics than "
                         f"{inputs['latents'] / 'stats.json'}")
    return ddim, load_autoencoder(inputs["model"] / "model.pt", device=device)


@torch.no_grad()
def decoded_samples(cfg: Config, ddim: DDIMModel, autoencoder: torch.nn.Module, num: int) -> Iterator[torch.Tensor]:
    """Batches of decoded DDIM samples (B, 3, 32, 32) in [0, 1] on the model's device, num in all.

    One generator seeded with cfg.sampling.seed feeds every batch, so a seed fixes the whole sequence.
    Sampling and decoding run in float32 (no autocast).
    """
    s = cfg.sampling
    generator = torch.Generator().manual_seed(s.seed)
    for i in range(math.ceil(num / s.batch_size)):
        b = min(s.batch_size, num - i * s.batch_size)
        z = sample_latents(ddim, b, steps=s.steps, eta=s.eta, spacing=s.spacing, generator=generator, amp=None)
        yield autoencoder.decode(z.float()).float().clamp(0, 1)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8 0…255 (rounded, as PNG and samples.pt store them), on the CPU."""
    return (x * 255).round().to(torch.uint8).cpu()


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.train.device)
    ddim, autoencoder = load_sampler(cfg, inputs, device)
    s, num = cfg.sampling, cfg.sampling.saved_samples
    images = torch.empty((num, 3, 32, 32), dtype=torch.uint8)
    start = 0
    for batch in decoded_samples(cfg, ddim, autoencoder, num):
        images[start:start + len(batch)] = to_uint8(batch)
        start += len(batch)
    out = outputs["samples"]
    atomic_torch_save({"images": images, "seed": s.seed, "steps": s.steps, "eta": s.eta, "spacing": s.spacing,
                       "ddim_step": ddim.step}, out / "samples.pt")
    grid = images[:cfg.figures.grid_samples].float() / 255
    save_grid(grid, out / "samples.png", ncols=math.ceil(math.sqrt(len(grid))))
    metrics = {"samples": float(num), "sample_pixel_mean": float(images.float().mean() / 255)}
    finish_output(out, cfg, stage="sample", metrics=metrics)
    return metrics
