"""Stage sample: the run's decoded DDIM samples, drawn once in float32 (bf16 shifts FID), stored as uint8 chunks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Iterator

import torch

from hybridmi.config import Config
from hybridmi.eval.figures import save_grid
from hybridmi.eval.samples import to_uint8, write_samples
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output, sampler_settings, upstream
from hybridmi.train.sampling import decoded_samples, load_sampler

INPUTS = ("ddim", "latents", "model")
OUTPUTS = ("samples",)


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.runtime.device)
    ddim, autoencoder = load_sampler(**{k: inputs[k] for k in INPUTS}, device=device)
    settings, out, keep = sampler_settings(cfg.sampling), outputs["samples"], cfg.figures.grid_samples
    grid: list[torch.Tensor] = []
    pixel_sum = 0

    def observed(batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """uint8 batches, keeping the grid's first images and the pixel sum on the way."""
        nonlocal pixel_sum
        for batch in batches:
            images = to_uint8(batch)
            pixel_sum += int(images.sum(dtype=torch.int64))
            held = sum(len(g) for g in grid)
            if held < keep:
                grid.append(images[: keep - held].clone())
            yield images

    draws = decoded_samples(ddim, autoencoder, cfg.sampling.num_samples, **settings)
    index = write_samples(observed(draws), out, sampler={**settings, "ddim_step": ddim.step})
    shown = torch.cat(grid).float() / 255
    save_grid(shown, out / "samples.png", ncols=math.ceil(math.sqrt(len(shown))))
    count = index["count"]
    metrics = {"samples": float(count), "sample_pixel_mean": pixel_sum / (255 * count * math.prod(shown.shape[1:]))}
    finish_output(out, cfg, stage="sample", metrics=metrics, extra={"upstream": upstream(inputs)})
    return metrics
