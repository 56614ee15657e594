"""Stage fid: FID of the stored samples and reconstruction FID of as many decoded test images, both against the
cached statistics of fid.reference_split (the second is the ceiling the decoder sets for any generator on this
latent); sidecar: the protocol."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from hybridmi.config import Config
from hybridmi.data.prepared import Split, load_dataset
from hybridmi.eval import fid as frechet
from hybridmi.eval.reconstruction import reconstructions
from hybridmi.eval.samples import rebatch, sample_chunks
from hybridmi.models.serialize import load_autoencoder
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output, matching_samples, report_eval, upstream

INPUTS = ("samples", "dataset", "model")
OUTPUTS = ("metrics",)
CACHE_ENV = "HYBRIDMI_FID_CACHE"


@dataclass
class Scorer:
    """The Inception, the reference statistics and the test split of one FID protocol (``cfg.fid``)."""

    inception: frechet.FIDInceptionV3
    mu: np.ndarray
    sigma: np.ndarray
    reference: Split
    subset: torch.Tensor | None
    test: Split
    device: torch.device

    @classmethod
    def load(cls, cfg: Config, dataset: Path) -> Scorer:
        f, device = cfg.fid, choose_device(cfg.runtime.device)
        inception = frechet.load_inception(
            weights_path=f.weights, device=device, channels_last=cfg.runtime.channels_last
        )
        train, test = load_dataset(dataset)
        reference = train if f.reference_split == "train" else test
        subset = frechet.reference_subset(len(reference.labels), f.reference_samples, seed=f.reference_seed)
        cache_dir = Path(os.environ.get(CACHE_ENV) or f.cache_dir).expanduser()
        cache = dict(checksum=reference.checksum, model=inception, cache_dir=cache_dir, batch_size=f.batch_size)
        mu, sigma = frechet.reference_statistics(
            reference.images, **cache, num=f.reference_samples, seed=f.reference_seed
        )
        return cls(inception, mu, sigma, reference, subset, test, device)

    def fid(self, batches: Iterable[torch.Tensor]) -> float:
        """FID of float batches (B, 3, H, W) in [0, 1] against the reference statistics."""
        return frechet.frechet_distance(*frechet.activation_statistics(batches, self.inception), self.mu, self.sigma)

    def reconstruction_fid(self, model: Path, num: int, *, seed: int, batch_size: int) -> float:
        """FID of ``num`` test images (a ``seed``-ed subset) encoded and decoded by the autoencoder in ``model``."""
        autoencoder = load_autoencoder(model / "model.pt", device=self.device)
        chosen = frechet.reference_subset(len(self.test.labels), num, seed=seed)
        originals = self.test.images if chosen is None else self.test.images[chosen]
        return self.fid(reconstructions(autoencoder, originals, batch_size=batch_size, device=self.device))


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    out, f = outputs["metrics"], cfg.fid
    index = matching_samples(cfg, inputs["samples"])
    num = index["count"]
    scorer = Scorer.load(cfg, inputs["dataset"])
    reference, subset = scorer.reference, scorer.subset
    reference_count = len(reference.labels) if subset is None else len(subset)
    value = scorer.fid(b.float().div_(255.0) for b in rebatch(sample_chunks(inputs["samples"]), f.batch_size))
    recon_num = min(num, len(scorer.test.labels))
    recon = scorer.reconstruction_fid(inputs["model"], recon_num, seed=f.reference_seed, batch_size=f.batch_size)
    metrics = {
        "fid": value,
        "fid_num_samples": float(num),
        "fid_reference_count": float(reference_count),
        "recon_fid": recon,
        "recon_fid_num_images": float(recon_num),
    }
    protocol = {
        "num_samples": num,
        "reference_split": f.reference_split,
        "reference_count": reference_count,
        "reference_split_size": len(reference.labels),
        "reference_subset_seed": None if subset is None else f.reference_seed,
        "reference_checksum": reference.checksum,
        "weights_sha256": scorer.inception.weights_sha256,
        "weights_record": scorer.inception.weights_record,
        "sampling": index["sampler"],
        "samples": "decoded DDIM samples drawn in float32 by the sample stage, rounded to uint8 as stored",
        "reconstructions": f"{recon_num} test images (subset seed {f.reference_seed}) encoded and decoded by the "
        "trained autoencoder, rounded to uint8",
    }
    report_eval(callbacks, metrics, step=index["sampler"]["ddim_step"])
    extra = {"fid_reference_split": f.reference_split, "fid_protocol": protocol, "upstream": upstream(inputs)}
    finish_output(out, cfg, stage="fid", metrics=metrics, extra=extra)
    return metrics
