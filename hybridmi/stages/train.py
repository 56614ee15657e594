"""Stage train: the hybrid representation (autoencoder + MoCo-v2 on y) from a prepared data set."""
from __future__ import annotations

import time
from pathlib import Path

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.models.serialize import save_autoencoder
from hybridmi.stages.common import finish_output
from hybridmi.train.hybrid import train_hybrid

INPUTS = ("dataset",)
OUTPUTS = ("model",)
CHECKPOINTS = "checkpoints"  # inside the model artifact; resumed from when present


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    train, test = load_dataset(inputs["dataset"])
    out = outputs["model"]
    start = time.monotonic()
    result = train_hybrid(cfg, train, out_dir=out / CHECKPOINTS, callbacks=callbacks, monitor=test)
    seconds = time.monotonic() - start
    save_autoencoder(result.model, out / "model.pt", extra={
        "config": cfg.model_dump(mode="json"), "step": result.step, "dataset_checksum": train.checksum,
    })
    metrics = {"steps": float(result.step), "train_seconds": seconds, "skipped_steps": float(result.skipped_steps)}
    if result.run_length.get("estimated_at_step") is not None:  # a time-budgeted run: how its length was set
        metrics.update({"planned_steps": float(result.run_length["total_steps"]),
                        "measured_step_time_s": result.run_length["step_time_s"]})
    if result.last_metrics is not None:
        m = result.last_metrics
        metrics.update({"loss": m.loss, "images_per_s": m.images_per_s, **{f"loss_{k}": v for k, v in m.terms.items()}})
    finish_output(out, cfg, stage="train", metrics=metrics)
    return metrics
