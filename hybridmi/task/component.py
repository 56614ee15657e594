"""What a KFP component body does besides ``run_task``: set up logging, put a stage's results on its output artifacts.

Output artifacts are duck-typed (``.path``, ``.metadata``, ``log_metric``, ``log_confusion_matrix``):
this module imports no kfp.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from hybridmi.runtime import setup_logging, write_json


def setup_task_logging() -> None:
    """Logging for a task process (an entry point: components call it once)."""
    setup_logging(os.environ.get("HYBRIDMI_LOG_LEVEL", "INFO"))


def log_metrics(artifact: Any, values: Mapping[str, float], *, metadata: Mapping[str, Any] = ()) -> None:
    """Log ``values`` on a KFP Metrics artifact (shown in the UI) and write them as JSON at its path.

    A Metrics artifact whose path is an existing directory (a stage's own metrics output) keeps its
    files; otherwise the JSON document is the artifact's file, so every runner has something to upload.
    """
    for key, value in values.items():
        artifact.log_metric(key, value)
    for key, value in dict(metadata).items():
        artifact.metadata[key] = value
    path = Path(artifact.path)
    if not path.is_dir():
        write_json(path, dict(values))


def log_confusion(artifact: Any, metrics_dir: str | Path) -> bool:
    """Log ``<metrics_dir>/confusion.json`` ({classes, confusion_matrix}) on a ClassificationMetrics artifact.

    Returns False when the stage wrote no confusion matrix. The artifact's file gets the same JSON.
    """
    source = Path(metrics_dir) / "confusion.json"
    if not source.is_file():
        return False
    doc = json.loads(source.read_text())
    artifact.log_confusion_matrix(
        [str(c) for c in doc["classes"]], [[int(v) for v in row] for row in doc["confusion_matrix"]]
    )
    write_json(Path(artifact.path), doc)
    return True
