"""A trainer's progress reports over its run — loss, each loss term, learning rate and throughput against step.

The step loop appends one row per report and keeps the rows in every checkpoint, so a run resumed from a
checkpoint (its own, or another run's through ``--resume-from``) keeps the rows up to the step it resumes at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from hybridmi.runtime import write_json
from hybridmi.train.callbacks import StepMetrics

HISTORY_FILE = "history.json"  # in the train stage's model artifact and the ddim stage's ddim artifact
FORMAT = 1
Row = dict[str, float]  # step, epoch, loss, one column per loss term, lr, images_per_s


def history_row(m: StepMetrics) -> Row:
    """One progress report as a row: loss and terms are means since the previous report; lr at its step."""
    return {"step": m.step, "epoch": m.epoch, "loss": m.loss, **m.terms, "lr": m.lr, "images_per_s": m.images_per_s}


def write_history(path: str | Path, rows: Iterable[Row], *, kind: str) -> Path:
    """Write ``{format, kind, rows}`` atomically: the history of trainer ``kind`` ("hybrid" or "ddim")."""
    return write_json(path, {"format": FORMAT, "kind": kind, "rows": list(rows)})


def read_history(path: str | Path) -> dict[str, Any]:
    """A history written by ``write_history``; ValueError naming the file when it is not one."""
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("rows"), list):
        raise ValueError(f"{path} is not a training history of format {FORMAT}")
    return doc
