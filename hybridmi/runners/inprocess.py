"""Run the pipeline's stages in this process, in DAG order: no kfp, the same ``run_task`` every component calls."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping

from hybridmi.config import Config
from hybridmi.errors import TaskFailed
from hybridmi.stages import stage_module
from hybridmi.task.dag import execution_order, wiring
from hybridmi.task.run import run_task

log = logging.getLogger(__name__)


class StageFailed(TaskFailed):
    """A stage of a run failed; the message is the stage's own error; finished artifacts stay under run_dir."""

    def __init__(self, stage: str, message: str, *, run_dir: Path) -> None:
        super().__init__(f"stage {stage} failed: {message} (finished artifacts stay in {run_dir})")
        self.stage = stage
        self.error = message
        self.run_dir = run_dir


def stage_outputs(stage: str, run_dir: Path) -> dict[str, Path]:
    """Where stage ``stage`` writes its outputs in a run directory."""
    return {name: run_dir / stage / name for name in stage_module(stage).OUTPUTS}


def run_stage_inprocess(
    stage: str, cfg: Config, *, inputs: Mapping[str, str | Path], run_dir: Path, env: Mapping[str, str]
) -> dict[str, Path]:
    """One stage via ``run_task``; a failure becomes StageFailed naming the stage and its error."""
    outputs = stage_outputs(stage, run_dir)
    start = time.monotonic()
    try:
        run_task(stage, cfg, inputs=inputs, outputs=outputs, env=env)
    except Exception as exc:
        raise StageFailed(stage, f"{type(exc).__name__}: {exc}", run_dir=run_dir) from exc
    log.info("in-process stage %s done in %.1f s", stage, time.monotonic() - start)
    return outputs


def run_pipeline_inprocess(cfg: Config, *, run_dir: Path, env: Mapping[str, str]) -> dict[str, dict[str, Path]]:
    """Every stage in DAG order; returns task -> output name -> directory."""
    edges = wiring()
    produced: dict[str, dict[str, Path]] = {}
    for stage in execution_order():
        inputs = {name: produced[producer][output] for name, (producer, output) in edges[stage].items()}
        produced[stage] = run_stage_inprocess(stage, cfg, inputs=inputs, run_dir=run_dir, env=env)
    return produced
