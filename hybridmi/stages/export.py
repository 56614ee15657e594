"""Stage export: the run's model and DDIM as one self-contained model package (docs/export.md)."""

from __future__ import annotations

from pathlib import Path

from hybridmi.config import Config
from hybridmi.package import export_package
from hybridmi.stages.common import finish_output, upstream

INPUTS = ("model", "ddim")
OUTPUTS = ("package",)


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    out = outputs["package"]
    export_package(inputs["model"], inputs["ddim"], out, config=cfg)
    metrics = {"package_bytes": float(sum(p.stat().st_size for p in out.iterdir() if p.is_file()))}
    # The sidecar lies beside the package's own files; checksums.json does not list it and the loader never reads it.
    # No metrics.json here: the package holds only what it lists (finish_output rewrites config.yaml byte-identically).
    finish_output(out, cfg, stage="export", extra={"upstream": upstream(inputs)})
    return metrics
