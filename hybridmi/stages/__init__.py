"""Pipeline stages: (config, input artifacts) -> output artifacts.

Every stage is a module ``hybridmi.stages.<name>`` with

    INPUTS: tuple[str, ...]    names of the input artifacts it reads (each a local directory)
    OUTPUTS: tuple[str, ...]   names of the output artifacts it writes (each a local directory)
    def run(cfg, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]

and returns its scalar metrics (also written to ``metrics.json`` in its first output). The CLI
(``hybridmi stage NAME``), the KFP components and the tests all call ``run_stage``.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from pathlib import Path
from typing import Iterable, Mapping

from hybridmi.config import Config

log = logging.getLogger(__name__)

# Pipeline order; each name is a module in this package.
STAGE_NAMES = ("prepare", "train", "probe", "reconstruction", "latents", "ddim", "sample", "fid", "figures", "report")


def stage_module(name: str):
    """The module implementing stage ``name``; ValueError for an unknown name."""
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")
    return importlib.import_module(f"hybridmi.stages.{name}")


def run_stage(
    name: str,
    cfg: Config,
    inputs: Mapping[str, str | Path],
    outputs: Mapping[str, str | Path],
    *,
    callbacks: Iterable[object] = (),
) -> dict[str, float]:
    """Check the artifact names against the stage's declaration, then run it."""
    module = stage_module(name)
    missing_in = [k for k in module.INPUTS if k not in inputs]
    unknown_in = [k for k in inputs if k not in module.INPUTS]
    missing_out = [k for k in module.OUTPUTS if k not in outputs]
    unknown_out = [k for k in outputs if k not in module.OUTPUTS]
    for what, keys in (
        ("missing input", missing_in),
        ("unknown input", unknown_in),
        ("missing output", missing_out),
        ("unknown output", unknown_out),
    ):
        if keys:
            raise ValueError(
                f"stage {name}: {what} {', '.join(keys)} (inputs: {', '.join(module.INPUTS) or 'none'}; "
                f"outputs: {', '.join(module.OUTPUTS)})"
            )
    in_paths = {k: Path(v) for k, v in inputs.items()}
    for key, path in in_paths.items():
        if not path.exists():
            raise FileNotFoundError(f"stage {name}: input {key} does not exist: {path}")
    out_paths = {k: Path(v) for k, v in outputs.items()}
    for path in out_paths.values():
        path.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    metrics = module.run(cfg, in_paths, out_paths, callbacks=callbacks)
    seconds = time.monotonic() - start
    _record_seconds(out_paths.values(), seconds)
    log.info("stage %s finished in %.1f s", name, seconds)
    return metrics


def _record_seconds(directories: Iterable[Path], seconds: float) -> None:
    """Add the stage's wall time to each output's sidecar (the report's timings; not part of its checksum)."""
    from hybridmi.runtime import write_json
    from hybridmi.stages.common import SIDECAR

    for directory in directories:
        path = directory / SIDECAR
        if path.is_file():
            write_json(path, {**json.loads(path.read_text()), "seconds": round(seconds, 3)})
