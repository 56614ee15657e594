"""Stage figures: interpolations of z, y and ŷ (with their pixel change), reconstructions, a sample grid and the
training curves of the hybrid trainer (the model's history) and of the latent DDIM (the ddim's history)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval import figures as fig
from hybridmi.eval.curves import curve_pngs
from hybridmi.eval.samples import first_samples
from hybridmi.models.serialize import load_autoencoder
from hybridmi.runtime import atomic_write_bytes, choose_device
from hybridmi.stages.common import finish_output, matching_samples, report_eval
from hybridmi.train.history import HISTORY_FILE, read_history

log = logging.getLogger(__name__)

INPUTS = ("dataset", "model", "samples", "ddim")  # ddim: its training history only (the samples are drawn once)
OUTPUTS = ("figures",)
TRAINERS = {"hybrid": "model", "ddim": "ddim"}  # trainer -> the input artifact that holds its history


def training_histories(inputs: dict[str, Path]) -> dict[str, list[dict[str, float]]]:
    """Trainer -> its history rows, from the inputs' history.json; an artifact without one (written before
    trainers kept a history) is left out with a warning."""
    histories = {}
    for trainer, name in TRAINERS.items():
        path = inputs[name] / HISTORY_FILE
        if path.is_file():
            histories[trainer] = read_history(path)["rows"]
        else:
            log.warning("%s has no %s: the %s training curves are left out", inputs[name], HISTORY_FILE, trainer)
    return histories


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
    for name, png in curve_pngs(training_histories(inputs)).items():
        atomic_write_bytes(out / name, png)
    report_eval(callbacks, metrics)
    finish_output(out, cfg, stage="figures", metrics=metrics)
    return metrics
