"""Stage reconstruction: test-split MSE in the paper's unit (Σ over 3072 values, mean over images) and PSNR."""

from __future__ import annotations

from pathlib import Path

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.reconstruction import reconstruction_metrics
from hybridmi.models.serialize import load_autoencoder
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output, report_eval

INPUTS = ("dataset", "model")
OUTPUTS = ("metrics",)


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.runtime.device)
    _, test = load_dataset(inputs["dataset"])
    model = load_autoencoder(inputs["model"] / "model.pt", device=device)
    metrics = reconstruction_metrics(model, test, batch_size=cfg.eval.batch_size, device=device)
    report_eval(callbacks, metrics)
    finish_output(outputs["metrics"], cfg, stage="reconstruction", metrics=metrics)
    return metrics
