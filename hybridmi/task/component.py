"""What a KFP component body does: set up logging, run its task, put the results on its output artifacts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from hybridmi.runtime import setup_logging, write_json
from hybridmi.task.run import TaskResult, run_task


def setup_task_logging() -> None:
    """Logging for a task process (an entry point: components call it once)."""
    setup_logging(os.environ.get("HYBRIDMI_LOG_LEVEL", "INFO"))


def run_component(
    stage: str,
    config: str,
    *,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    metrics: Any = None,
    parameters: Mapping[str, str] = {},
    resume_from: str | None = None,
) -> TaskResult:
    """``run_task`` on the artifacts' paths; the metrics logged on ``metrics`` (default: the ``metrics`` output, if
    any), the task's metadata on its first output."""
    setup_task_logging()
    result = run_task(
        stage,
        config,
        inputs={name: artifact.path for name, artifact in inputs.items()},
        outputs={name: artifact.path for name, artifact in outputs.items()},
        parameters=parameters,
        resume_from=resume_from,
    )
    next(iter(outputs.values())).metadata.update(result.metadata)
    metrics = outputs.get("metrics") if metrics is None else metrics
    if metrics is not None:
        log_metrics(metrics, result.metrics, metadata=result.metadata)
    return result


def log_metrics(artifact: Any, values: Mapping[str, float], *, metadata: Mapping[str, Any] = ()) -> None:
    """Log ``values`` (and ``metadata``) on a KFP Metrics artifact and write them as JSON at its path, unless the
    path is a directory (a stage's own metrics output, which keeps its files)."""
    for key, value in values.items():
        artifact.log_metric(key, value)
    artifact.metadata.update(dict(metadata))
    path = Path(artifact.path)
    if not path.is_dir():
        write_json(path, dict(values))


def log_confusion(artifact: Any, metrics_dir: str | Path) -> bool:
    """Log ``<metrics_dir>/confusion.json`` ({classes, confusion_matrix}) on a ClassificationMetrics artifact and
    write the same JSON at its path; False when the stage wrote no confusion matrix."""
    source = Path(metrics_dir) / "confusion.json"
    if not source.is_file():
        return False
    doc = json.loads(source.read_text())
    artifact.log_confusion_matrix(
        [str(c) for c in doc["classes"]], [[int(v) for v in row] for row in doc["confusion_matrix"]]
    )
    write_json(Path(artifact.path), doc)
    return True
