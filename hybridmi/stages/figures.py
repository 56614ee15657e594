"""Stage figures: interpolations of z, y and ŷ (with their pixel change), reconstructions and a sample grid."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval import figures as fig
from hybridmi.eval.samples import first_samples
from hybridmi.models.serialize import load_autoencoder
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output, matching_samples, report_eval

INPUTS = ("dataset", "model", "samples")
OUTPUTS = ("figures",)


@torch.no_grad()
def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.runtime.device)
    _, test = load_dataset(inputs["dataset"])
    matching_samples(cfg, inputs["samples"])
    autoencoder = load_autoencoder(inputs["model"] / "model.pt", device=device)
    fc, out = cfg.figures, outputs["figures"]
    a, b = fig.pick_pairs(len(test.labels), fc.pairs, seed=cfg.sampling.seed)
    x_a, x_b = (test.images[i].to(device).float() / 255 for i in (a, b))
    metrics: dict[str, float] = {}
    c = cfg.model.contrastive_channels
    for part in fig.PARTS:
        images = fig.interpolation_images(autoencoder, x_a, x_b, steps=fc.steps, part=part, contrastive_channels=c)
        fig.save_grid(images, out / f"interp_{part}.png", ncols=fc.steps)
        metrics[f"interp_{part}_pixel_change"] = fig.interpolation_change(images, steps=fc.steps)
    fig.save_grid(fig.reconstruction_images(autoencoder, x_a), out / "reconstructions.png", ncols=2 * min(4, fc.pairs))
    samples = first_samples(inputs["samples"], min(fc.grid_samples, cfg.sampling.num_samples)).float() / 255
    fig.save_grid(samples, out / "samples.png", ncols=math.ceil(math.sqrt(len(samples))))
    report_eval(callbacks, metrics)
    finish_output(out, cfg, stage="figures", metrics=metrics)
    return metrics
