"""The last progress report beside a trainer checkpoint (``last.pt.json``), so that a run resumed at its
very end (a retried pod, a rerun into the same output) still reports the loss it finished with.

The report travels with the checkpoint: the mirror publishes ``<checkpoint>.json`` with it.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hybridmi.runtime import write_json
from hybridmi.train.callbacks import StepMetrics


def report_path(checkpoint: Path) -> Path:
    return Path(checkpoint).with_name(Path(checkpoint).name + ".json")


class ProgressSidecar:
    """A TrainCallback writing {step, report} beside every checkpoint (before later callbacks see it)."""

    def __init__(self) -> None:
        self.last: StepMetrics | None = None

    def on_step(self, metrics: StepMetrics) -> None:
        self.last = metrics

    def on_checkpoint(self, path: Path, step: int) -> None:
        report = dataclasses.asdict(self.last) if self.last is not None and self.last.step <= step else None
        write_json(report_path(path), {"step": step, "report": report})


def last_report(checkpoint: Path, step: int) -> StepMetrics | None:
    """The report saved with ``checkpoint`` when it was written at ``step``; None when there is none."""
    try:
        doc = json.loads(report_path(checkpoint).read_text())
    except (OSError, ValueError):
        return None
    if doc.get("step") != step or not isinstance(doc.get("report"), dict):
        return None
    fields = {f.name for f in dataclasses.fields(StepMetrics)}
    return StepMetrics(**{k: v for k, v in doc["report"].items() if k in fields})
