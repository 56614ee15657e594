"""Stage train: the hybrid representation (autoencoder + MoCo-v2 on y) from a prepared data set."""
from __future__ import annotations

import time
from pathlib import Path

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.models.serialize import save_autoencoder
from hybridmi.stages.common import finish_output
from hybridmi.stages.progress import ProgressSidecar, last_report
from hybridmi.train.hybrid import train_hybrid

INPUTS = ("dataset",)
OUTPUTS = ("model",)
CHECKPOINTS = "checkpoints"  # inside the model artifact; resumed from when present


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    train, test = load_dataset(inputs["dataset"])
    out = outputs["model"]
    start = time.monotonic()
    result = train_hybrid(cfg, train, out_dir=out / CHECKPOINTS, callbacks=[ProgressSidecar(), *callbacks], monitor=test)
    seconds = time.monotonic() - start
    save_autoencoder(result.model, out / "model.pt", extra={
        "config": cfg.model_dump(mode="json"), "step": result.step, "dataset_checksum": train.checksum,
    })
    metrics = {"steps": float(result.step), "train_seconds": seconds}
    m = result.last_metrics or last_report(result.checkpoint, result.step)  # resumed at the end: the saved report
    if m is not None:
        metrics.update({"loss": m.loss, "images_per_s": m.images_per_s, **{f"loss_{k}": v for k, v in m.terms.items()}})
    finish_output(out, cfg, stage="train", metrics=metrics)
    return metrics
