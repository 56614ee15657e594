"""Stage prepare: decode a data source once into the uint8 tensor layout every later stage reads."""

from __future__ import annotations

import json
from pathlib import Path

from hybridmi.config import Config
from hybridmi.data.prepare import prepare_dataset
from hybridmi.data.prepared import DATASET_JSON
from hybridmi.stages.common import finish_output

INPUTS: tuple[str, ...] = ()
OUTPUTS = ("dataset",)


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    prepare_dataset(cfg.data, outputs["dataset"])
    return finish(cfg, outputs["dataset"])


def finish(cfg: Config, directory: Path) -> dict[str, float]:
    """Metrics, config and sidecar of a prepared data set directory (decoded here, or fetched from a store)."""
    info = json.loads((Path(directory) / DATASET_JSON).read_text())
    metrics = {f"num_{split}": float(info["counts"][split]) for split in ("train", "test")}
    metrics["num_classes"] = float(len(info["classes"]))
    finish_output(directory, cfg, stage="prepare", metrics=metrics, extra={"dataset_checksum": info["checksum"]})
    return metrics
