"""Stage fid: FID of the stored samples against the cached statistics of fid.reference_split; sidecar: the protocol."""

from __future__ import annotations

import os
from pathlib import Path

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval import fid as frechet
from hybridmi.eval.samples import rebatch, sample_chunks
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output, matching_samples, report_eval, upstream

INPUTS = ("samples", "dataset")
OUTPUTS = ("metrics",)
CACHE_ENV = "HYBRIDMI_FID_CACHE"


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.runtime.device)
    out, f = outputs["metrics"], cfg.fid
    index = matching_samples(cfg, inputs["samples"])
    num = index["count"]
    inception = frechet.load_inception(weights_path=f.weights, device=device, channels_last=cfg.runtime.channels_last)
    train, test = load_dataset(inputs["dataset"])
    reference = train if f.reference_split == "train" else test
    subset = frechet.reference_subset(len(reference.labels), f.reference_samples, seed=f.reference_seed)
    reference_count = len(reference.labels) if subset is None else len(subset)
    cache_dir = Path(os.environ.get(CACHE_ENV) or f.cache_dir).expanduser()
    cache = dict(checksum=reference.checksum, model=inception, cache_dir=cache_dir, batch_size=f.batch_size)
    mu_ref, sigma_ref = frechet.reference_statistics(
        reference.images, **cache, num=f.reference_samples, seed=f.reference_seed
    )
    batches = (b.float().div_(255.0) for b in rebatch(sample_chunks(inputs["samples"]), f.batch_size))
    mu, sigma = frechet.activation_statistics(batches, inception)
    value = frechet.frechet_distance(mu, sigma, mu_ref, sigma_ref)
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
    extra = {"fid_reference_split": f.reference_split, "fid_protocol": protocol, "upstream": upstream(inputs)}
    finish_output(out, cfg, stage="fid", metrics=metrics, extra=extra)
    return metrics
