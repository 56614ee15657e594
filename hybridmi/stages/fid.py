"""Stage fid: FID of cfg.sampling.num_samples decoded DDIM samples against a data split's statistics.

Protocol: samples are drawn in float32, decoded, and rounded to uint8 exactly as the sample stage
saves them before the Inception sees them; they stream through batch by batch (never all held at
once). The reference is the ``fid.reference_split`` split, or a random subset of
``fid.reference_samples`` images drawn with ``fid.reference_seed``; its statistics are cached in
$HYBRIDMI_FID_CACHE, else ``fid.cache_dir``, keyed by data checksum + weights sha256 + subset.
Weights: ``fid.weights``, else torch.hub's cache (made by ``hybridmi fid-weights``).

Output ``metrics/``: metrics.json (fid, fid_num_samples, fid_reference_count), fid_samples.png, and the
protocol in the sidecar: ``fid_protocol`` (reference split, subset, weights hash and record, sampler)
and ``upstream`` (the sidecars of the input artifacts: their stage, time and data checksum).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.fid import activation_statistics, frechet_distance, load_inception, reference_statistics, reference_subset
from hybridmi.eval.figures import save_grid
from hybridmi.runtime import choose_device
from hybridmi.stages.common import SIDECAR, finish_output, read_sidecar, report_eval
from hybridmi.stages.sample import decoded_samples, load_sampler, to_uint8

INPUTS = ("ddim", "latents", "model", "dataset")
OUTPUTS = ("metrics",)
CACHE_ENV = "HYBRIDMI_FID_CACHE"
UPSTREAM_KEYS = ("stage", "seconds", "config_hash", "checksum", "dataset_checksum", "code_version")


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


def quantized(batches: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1] → the same images as saved (uint8, rounded), back as floats in [0, 1] on the CPU."""
    for batch in batches:
        yield to_uint8(batch).float().div_(255.0)


def upstream(inputs: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """Input name → the parts of its sidecar that describe where it came from (stage, seconds, checksums)."""
    found = {}
    for name, directory in inputs.items():
        if (Path(directory) / SIDECAR).is_file():
            sidecar = read_sidecar(directory)
            found[name] = {k: sidecar[k] for k in UPSTREAM_KEYS if k in sidecar}
    return found


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.train.device)
    out, f = outputs["metrics"], cfg.fid
    if cfg.sampling.num_samples < 2:
        raise ValueError(f"sampling.num_samples {cfg.sampling.num_samples} is too few for FID (at least 2)")
    inception = load_inception(weights_path=f.weights, device=device)
    train, test = load_dataset(inputs["dataset"])
    reference = train if f.reference_split == "train" else test
    subset = reference_subset(len(reference.labels), f.reference_samples, seed=f.reference_seed)
    reference_count = len(reference.labels) if subset is None else len(subset)
    cache_dir = Path(os.environ.get(CACHE_ENV) or f.cache_dir).expanduser()
    mu_ref, sigma_ref = reference_statistics(reference.images, checksum=reference.checksum, model=inception,
                                             cache_dir=cache_dir, batch_size=f.batch_size,
                                             num=f.reference_samples, seed=f.reference_seed)
    ddim, autoencoder = load_sampler(cfg, inputs, device)
    grid: list[torch.Tensor] = []

    def keep_grid(batches: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        for batch in batches:
            need = cfg.figures.grid_samples - sum(len(g) for g in grid)
            if need > 0:
                grid.append(batch[:need])
            yield batch

    stream = keep_grid(quantized(decoded_samples(cfg, ddim, autoencoder, cfg.sampling.num_samples)))
    mu, sigma = activation_statistics(_rebatch(stream, f.batch_size), inception)
    value = frechet_distance(mu, sigma, mu_ref, sigma_ref)
    images = torch.cat(grid)
    save_grid(images, out / "fid_samples.png", ncols=math.ceil(math.sqrt(len(images))))
    metrics = {"fid": value, "fid_num_samples": float(cfg.sampling.num_samples),
               "fid_reference_count": float(reference_count)}
    protocol = {
        "num_samples": cfg.sampling.num_samples, "reference_split": f.reference_split,
        "reference_count": reference_count, "reference_split_size": len(reference.labels),
        "reference_subset_seed": None if subset is None else f.reference_seed,
        "reference_checksum": reference.checksum, "weights_sha256": inception.weights_sha256,
        "weights_record": inception.weights_record, "sampling": cfg.sampling.model_dump(),
        "samples": "decoded DDIM samples in float32, rounded to uint8 as saved",
    }
    report_eval(callbacks, metrics, step=ddim.step)
    finish_output(out, cfg, stage="fid", metrics=metrics,
                  extra={"fid_reference_split": f.reference_split, "fid_protocol": protocol, "upstream": upstream(inputs)})
    return metrics
