"""Stage fid: FID of cfg.sampling.num_samples decoded DDIM samples against a data split's statistics.

Samples stream through the Inception batch by batch (never all held at once). Reference statistics
(``fid-<data checksum>-<weights hash>.npz`` with mu, sigma, count) are cached in $HYBRIDMI_FID_CACHE
when that environment variable is set (share it between runs), otherwise written into the metrics
output itself. Weights: cfg.fid.weights, else torch.hub's cache ($TORCH_HOME/hub/checkpoints/).
Output ``metrics/``: metrics.json (fid, fid_num_samples, fid_reference_count), fid_samples.png.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator

import torch

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.fid import activation_statistics, frechet_distance, load_inception, reference_statistics
from hybridmi.eval.figures import save_grid
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output, report_eval
from hybridmi.stages.sample import decoded_samples, load_sampler

INPUTS = ("ddim", "latents", "model", "dataset")
OUTPUTS = ("metrics",)
CACHE_ENV = "HYBRIDMI_FID_CACHE"


def _rebatch(batches: Iterator[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Re-cut a stream of (B, ...) batches into batches of ``size`` (the last may be smaller)."""
    pending: list[torch.Tensor] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += len(batch)
        while held >= size:
            joined = torch.cat(pending)
            yield joined[:size]
            pending, held = [joined[size:]], held - size
    if held:
        yield torch.cat(pending)


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.train.device)
    out, f = outputs["metrics"], cfg.fid
    if cfg.sampling.num_samples < 2:
        raise ValueError(f"sampling.num_samples {cfg.sampling.num_samples} is too few for FID (at least 2)")
    inception = load_inception(weights_path=f.weights, device=device)
    train, test = load_dataset(inputs["dataset"])
    reference = train if f.reference_split == "train" else test
    cache_dir = Path(os.environ.get(CACHE_ENV) or out)
    mu_ref, sigma_ref = reference_statistics(reference.images, checksum=reference.checksum, model=inception,
                                             cache_dir=cache_dir, batch_size=f.batch_size)
    ddim, autoencoder = load_sampler(cfg, inputs, device)
    grid: list[torch.Tensor] = []

    def keep_grid(batches: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        for batch in batches:
            need = cfg.figures.grid_samples - sum(len(g) for g in grid)
            if need > 0:
                grid.append(batch[:need].cpu())
            yield batch

    stream = keep_grid(decoded_samples(cfg, ddim, autoencoder, cfg.sampling.num_samples))
    mu, sigma = activation_statistics(_rebatch(stream, f.batch_size), inception)
    value = frechet_distance(mu, sigma, mu_ref, sigma_ref)
    images = torch.cat(grid)
    save_grid(images, out / "fid_samples.png", ncols=math.ceil(math.sqrt(len(images))))
    metrics = {"fid": value, "fid_num_samples": float(cfg.sampling.num_samples),
               "fid_reference_count": float(len(reference.labels))}
    report_eval(callbacks, metrics, step=ddim.step)
    finish_output(out, cfg, stage="fid", metrics=metrics, extra={"fid_reference_split": f.reference_split,
                                                                  "fid_sampling": cfg.sampling.model_dump()})
    return metrics
