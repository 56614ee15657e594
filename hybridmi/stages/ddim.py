"""Stage ddim: train the ε-UNet on the standardised train latents; ``ddim/last.pt`` is its checkpoint."""

from __future__ import annotations

from pathlib import Path

from hybridmi.config import Config
from hybridmi.eval.latents import load_latents, load_stats
from hybridmi.stages.common import finish_output
from hybridmi.train.ddim import train_ddim
from hybridmi.train.history import HISTORY_FILE, write_history

INPUTS = ("latents",)
OUTPUTS = ("ddim",)


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    train = load_latents(inputs["latents"] / "train.pt")
    mean, std = load_stats(inputs["latents"] / "stats.json")
    result = train_ddim(cfg, train.latents, mean=mean, std=std, out_dir=outputs["ddim"], callbacks=callbacks)
    last = result.last_metrics  # restored from the checkpoint when resumed at the end
    metrics = {"ddim_steps": float(result.step)}
    if last is not None:
        metrics |= {"ddim_loss": last.loss, "ddim_images_per_s": last.images_per_s}
    write_history(outputs["ddim"] / HISTORY_FILE, result.history, kind="ddim")  # before the sidecar: in its checksum
    finish_output(outputs["ddim"], cfg, stage="ddim", metrics=metrics, extra={"compute": result.compute})
    return metrics
