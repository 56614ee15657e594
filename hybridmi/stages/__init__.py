"""Pipeline stages: each module declares INPUTS, OUTPUTS and ``run(cfg, inputs, outputs, *, callbacks) -> metrics``."""

from __future__ import annotations

import importlib
import json
import logging
import time
from pathlib import Path
from typing import Iterable, Mapping

from hybridmi.config import Config
from hybridmi.errors import MissingInput, UsageError

log = logging.getLogger(__name__)

Paths = Mapping[str, str | Path]  # artifact name -> directory
# Pipeline order; each name is a module in this package.
STAGE_NAMES = (
    "prepare",
    "train",
    "probe",
    "reconstruction",
    "latents",
    "ddim",
    "export",
    "sample",
    "fid",
    "figures",
    "report",
)


def stage_module(name: str):
    """The module implementing stage ``name``; UsageError for an unknown name."""
    if name not in STAGE_NAMES:
        raise UsageError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")
    return importlib.import_module(f"hybridmi.stages.{name}")


def run_stage(name: str, cfg: Config, inputs: Paths, outputs: Paths, *, callbacks: Iterable = ()) -> dict[str, float]:
    """Check the artifact names against the stage's declaration, then run it."""
    module = stage_module(name)
    for kind, given, declared in (("input", inputs, module.INPUTS), ("output", outputs, module.OUTPUTS)):
        missing, unknown = [k for k in declared if k not in given], [k for k in given if k not in declared]
        for what, keys in (("missing", missing), ("unknown", unknown)):
            if keys:
                raise UsageError(
                    f"stage {name}: {what} {kind} {', '.join(keys)} (inputs: {', '.join(module.INPUTS) or 'none'}; "
                    f"outputs: {', '.join(module.OUTPUTS)})"
                )
    in_paths, out_paths = {k: Path(v) for k, v in inputs.items()}, {k: Path(v) for k, v in outputs.items()}
    for key, path in in_paths.items():
        if not path.exists():
            raise MissingInput(f"stage {name}: input {key} does not exist: {path}")
    for path in out_paths.values():
        path.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    metrics = module.run(cfg, in_paths, out_paths, callbacks=callbacks)
    seconds = time.monotonic() - start
    from hybridmi.runtime import write_json
    from hybridmi.stages.common import SIDECAR

    for path in (directory / SIDECAR for directory in out_paths.values()):  # the report's timings (not checksummed)
        if path.is_file():
            write_json(path, {**json.loads(path.read_text()), "seconds": round(seconds, 3)})
    log.info("stage %s finished in %.1f s", name, seconds)
    return metrics
