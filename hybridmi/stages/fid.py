"""Stage fid: FID of the sample stage's N = cfg.sampling.num_samples samples against a data split's statistics.

Protocol: the samples were drawn in float32, decoded and rounded to uint8 by the sample stage; here
they stream from its chunk files through the Inception in batches of ``fid.batch_size`` (never all
held at once) as floats in [0, 1]. The reference is the ``fid.reference_split`` split, or a random
subset of ``fid.reference_samples`` images drawn with ``fid.reference_seed``; its statistics are
cached in $HYBRIDMI_FID_CACHE, else ``fid.cache_dir``, keyed by data checksum + weights sha256 + subset.
Weights: ``fid.weights``, else torch.hub's cache (made by ``hybridmi fid-weights``).

Output ``metrics/``: metrics.json (fid, fid_num_samples, fid_reference_count) and, in the sidecar,
``fid_protocol`` (reference split, subset, weights hash and record, the sampler settings from the
samples' index) and ``upstream`` (the sidecars of the inputs and of the artifacts behind the samples:
stage, time and data checksum).
"""

from __future__ import annotations

import os
from pathlib import Path

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.fid import (
    activation_statistics,
    frechet_distance,
    load_inception,
    reference_statistics,
    reference_subset,
)
from hybridmi.eval.samples import rebatch, sample_chunks
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output, matching_samples, report_eval, upstream

INPUTS = ("samples", "dataset")
OUTPUTS = ("metrics",)
CACHE_ENV = "HYBRIDMI_FID_CACHE"


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.train.device)
    out, f = outputs["metrics"], cfg.fid
    index = matching_samples(cfg, inputs["samples"])
    num = index["count"]
    if num < 2:
        raise ValueError(f"sampling.num_samples {num} is too few for FID (at least 2)")
    inception = load_inception(weights_path=f.weights, device=device)
    train, test = load_dataset(inputs["dataset"])
    reference = train if f.reference_split == "train" else test
    subset = reference_subset(len(reference.labels), f.reference_samples, seed=f.reference_seed)
    reference_count = len(reference.labels) if subset is None else len(subset)
    cache_dir = Path(os.environ.get(CACHE_ENV) or f.cache_dir).expanduser()
    mu_ref, sigma_ref = reference_statistics(
        reference.images,
        checksum=reference.checksum,
        model=inception,
        cache_dir=cache_dir,
        batch_size=f.batch_size,
        num=f.reference_samples,
        seed=f.reference_seed,
    )
    batches = (b.float().div_(255.0) for b in rebatch(sample_chunks(inputs["samples"]), f.batch_size))
    mu, sigma = activation_statistics(batches, inception)
    value = frechet_distance(mu, sigma, mu_ref, sigma_ref)
    metrics = {"fid": value, "fid_num_samples": float(num), "fid_reference_count": float(reference_count)}
    protocol = {
        "num_samples": num,
        "reference_split": f.reference_split,
        "reference_count": reference_count,
        "reference_split_size": len(reference.labels),
        "reference_subset_seed": None if subset is None else f.reference_seed,
        "reference_checksum": reference.checksum,
        "weights_sha256": inception.weights_sha256,
        "weights_record": inception.weights_record,
        "sampling": index["sampler"],
        "samples": "decoded DDIM samples drawn in float32 by the sample stage, rounded to uint8 as stored",
    }
    report_eval(callbacks, metrics, step=index["sampler"]["ddim_step"])
    finish_output(
        out,
        cfg,
        stage="fid",
        metrics=metrics,
        extra={"fid_reference_split": f.reference_split, "fid_protocol": protocol, "upstream": upstream(inputs)},
    )
    return metrics
