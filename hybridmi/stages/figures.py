"""Stage figures: the paper's interpolation figures (all of z, only y, only ŷ), reconstructions, samples.

Output ``figures/``: interp_z.png, interp_y.png, interp_yhat.png (rows = test-image pairs, columns =
interpolation weight 0 … 1), reconstructions.png (original, reconstruction side by side) and
samples.png (the first cfg.figures.grid_samples of the sample stage's samples: nothing is sampled
here). Metrics: the mean pixel change across each interpolation row, which shows how much of the
decoded image each part of z carries.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.figures import (
    PARTS,
    interpolation_change,
    interpolation_images,
    pick_pairs,
    reconstruction_images,
    save_grid,
)
from hybridmi.eval.samples import first_samples
from hybridmi.models.serialize import load_autoencoder
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output, matching_samples, report_eval

INPUTS = ("dataset", "model", "samples")
OUTPUTS = ("figures",)


@torch.no_grad()
def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.train.device)
    _, test = load_dataset(inputs["dataset"])
    matching_samples(cfg, inputs["samples"])
    autoencoder = load_autoencoder(inputs["model"] / "model.pt", device=device)
    fc, out = cfg.figures, outputs["figures"]
    a, b = pick_pairs(len(test.labels), fc.pairs, seed=cfg.sampling.seed)
    x_a, x_b = (test.images[i].to(device).float() / 255 for i in (a, b))
    metrics: dict[str, float] = {}
    for part in PARTS:
        images = interpolation_images(
            autoencoder, x_a, x_b, steps=fc.steps, part=part, contrastive_channels=cfg.model.contrastive_channels
        )
        save_grid(images, out / f"interp_{part}.png", ncols=fc.steps)
        metrics[f"interp_{part}_pixel_change"] = interpolation_change(images, steps=fc.steps)
    save_grid(reconstruction_images(autoencoder, x_a), out / "reconstructions.png", ncols=2 * min(4, fc.pairs))
    samples = first_samples(inputs["samples"], min(fc.grid_samples, cfg.sampling.num_samples)).float() / 255
    save_grid(samples, out / "samples.png", ncols=math.ceil(math.sqrt(len(samples))))
    report_eval(callbacks, metrics)
    finish_output(out, cfg, stage="figures", metrics=metrics)
    return metrics
