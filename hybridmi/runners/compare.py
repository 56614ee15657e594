"""``hybridmi runs compare``: the headline numbers of local runs side by side, one column per run.

The rows are the stable metric names the report task logs as KFP Metrics scalars (``HEADLINE_METRICS``), so the
table lines runs up as the KFP UI's run comparison does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from hybridmi.errors import UsageError
from hybridmi.eval.report import HEADLINE_METRICS
from hybridmi.stages.common import SIDECAR

RESULT_STAGES = ("report", "probe", "reconstruction", "fid")  # the stages whose metrics.json hold headline numbers
MISSING = "–"


def _results(run_dir: Path) -> dict[str, list[Path]]:
    """Stage -> the finished output directories of that stage (with a metrics.json) under ``run_dir``."""
    found: dict[str, list[Path]] = {}
    for sidecar in sorted(run_dir.rglob(SIDECAR)):
        try:
            stage = json.loads(sidecar.read_text()).get("stage")
        except (OSError, ValueError, AttributeError):
            continue  # not one of ours
        if stage in RESULT_STAGES and (sidecar.parent / "metrics.json").is_file():
            found.setdefault(stage, []).append(sidecar.parent)
    return found


def run_metrics(run_dir: str | Path) -> dict[str, float]:
    """The headline numbers of a run directory (``hybridmi run``: ROOT/<run>): its report's, or, for a run that
    stopped before its report, those of its probe, reconstruction and fid outputs. UsageError (one line) for a
    directory that is not one run of the hybridmi pipeline."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run directory (no such directory)")
    results = _results(run_dir)
    if not results:
        raise UsageError(
            f"{run_dir} is not a run directory: it holds no finished {', '.join(RESULT_STAGES)} output "
            "(pass ROOT/<run> of `hybridmi run --root ROOT`)"
        )
    several = {stage: len(dirs) for stage, dirs in results.items() if len(dirs) > 1}
    if several:
        stage, count = next(iter(several.items()))
        raise UsageError(
            f"{run_dir} holds {count} {stage} outputs: pass the directory of one run of the hybridmi pipeline "
            "(not a run root, nor an alpha sweep)"
        )
    stages = ["report"] if "report" in results else [s for s in RESULT_STAGES if s in results]
    values: dict[str, float] = {}
    for stage in stages:
        values |= json.loads((results[stage][0] / "metrics.json").read_text())
    return {name: float(values[name]) for name in HEADLINE_METRICS if name in values}


def _labels(run_dirs: Sequence[Path]) -> list[str]:
    """Each run's directory name, or the path as given where two names are the same."""
    names = [p.name or str(p) for p in run_dirs]
    return [name if names.count(name) == 1 else str(path) for name, path in zip(names, run_dirs)]


def compare_table(runs: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one column per run (label -> metrics), one row per headline metric any run has."""
    names = [name for name in HEADLINE_METRICS if any(name in metrics for metrics in runs.values())]
    lines = ["| metric | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for name in names:
        cells = [MISSING if name not in m else f"{m[name]:.6g}" for m in runs.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare_runs(run_dirs: Sequence[str | Path]) -> str:
    """The comparison table of local run directories (their order kept)."""
    paths = [Path(p) for p in run_dirs]
    return compare_table(dict(zip(_labels(paths), map(run_metrics, paths))))
