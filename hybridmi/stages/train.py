"""Stage train: the hybrid representation; under torchrun (WORLD_SIZE > 1) one rank of a DDP run (rank 0 writes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.models.serialize import save_autoencoder
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output
from hybridmi.train.distributed import Ranks, process_group, rank_device
from hybridmi.train.history import HISTORY_FILE, write_history
from hybridmi.train.hybrid import train_hybrid

INPUTS = ("dataset",)
OUTPUTS = ("model",)
CHECKPOINTS = "checkpoints"  # inside the model artifact; resumed from when present


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    train, test = load_dataset(inputs["dataset"])
    out = outputs["model"]
    ranks = Ranks.from_env(os.environ)
    start = time.monotonic()
    with process_group(ranks, rank_device(choose_device(cfg.runtime.device), ranks)) as group:
        result = train_hybrid(cfg, train, out_dir=out / CHECKPOINTS, callbacks=callbacks, monitor=test, group=group)
    seconds = time.monotonic() - start
    metrics = {"steps": float(result.step), "train_seconds": seconds, "ranks": float(ranks.world_size)}
    if not ranks.main:  # rank 0 writes the model
        return metrics
    extra = {"config": cfg.model_dump(mode="json"), "step": result.step, "dataset_checksum": train.checksum}
    save_autoencoder(result.model, out / "model.pt", extra=extra)
    write_history(out / HISTORY_FILE, result.history, kind="hybrid")  # before the sidecar: in its checksum
    length = result.run_length
    if length.get("estimated_at_step") is not None:  # a time-budgeted run: how its length was set
        metrics |= {"planned_steps": float(length["total_steps"]), "measured_step_time_s": length["step_time_s"]}
    if result.last_metrics is not None:
        m = result.last_metrics
        metrics |= {"loss": m.loss, "images_per_s": m.images_per_s, **{f"loss_{k}": v for k, v in m.terms.items()}}
    finish_output(out, cfg, stage="train", metrics=metrics, extra={"compute": result.compute})
    return metrics
