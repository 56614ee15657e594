"""What ``hybridmi run`` prints at the end: where the report is, its headline numbers, and where the time went."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hybridmi.runners.local import LocalRun
from hybridmi.stages.common import SIDECAR

EXECUTOR_OUTPUT = "executor_output.json"


@dataclass(frozen=True)
class TaskTime:
    task: str
    wall_s: float  # from the previous task's end (or the run's start) to this task's end
    stage_s: float | None  # the stage's own time; None for tasks without a stage (configure)

    @property
    def overhead_s(self) -> float:
        return self.wall_s - (self.stage_s or 0.0)


def _stage_seconds(outputs: dict[str, Path]) -> float | None:
    for path in outputs.values():
        sidecar = Path(path) / SIDECAR
        if sidecar.is_file():
            seconds = json.loads(sidecar.read_text()).get("seconds")
            if seconds is not None:
                return float(seconds)
    return None


def task_times(run: LocalRun) -> list[TaskTime]:
    """Per-task wall and stage time of a kfp.local run, in the order the tasks finished."""
    ends = {}
    for task_dir in run.run_dir.iterdir():
        done = task_dir / EXECUTOR_OUTPUT
        if task_dir.is_dir() and done.is_file():
            ends[task_dir.name] = done.stat().st_mtime
    times, previous = [], run.started_unix or min(ends.values(), default=0.0)
    for task, end in sorted(ends.items(), key=lambda item: item[1]):
        times.append(TaskTime(task, max(0.0, end - previous), _stage_seconds(run.outputs.get(task, {}))))
        previous = end
    return times


def report_page(run: LocalRun) -> Path | None:
    """The run's HTML report (report stage output), or None when the run has no report task."""
    directory = run.outputs.get("report", {}).get("report")
    return Path(directory) / "report.html" if directory is not None else None


def headline_table(metrics: dict[str, float]) -> list[str]:
    """A short Markdown table of the report's headline numbers."""

    def pct(key: str) -> str:
        return f"{100 * metrics[key]:.1f}" if key in metrics else "–"

    rows = [
        ("linear accuracy z / y / ŷ (%)", f"{pct('linear_acc_z')} / {pct('linear_acc_y')} / {pct('linear_acc_yhat')}"),
        ("kNN accuracy z (%)", pct("knn_acc_z")),
    ]
    if "mse" in metrics:
        rows.append(("MSE (Σ over 3072 values) / PSNR", f"{metrics['mse']:.3f} / {metrics['psnr']:.1f} dB"))
    if "fid" in metrics:
        rows.append(
            (
                "FID (N samples vs reference images)",
                f"{metrics['fid']:.1f} ({int(metrics['fid_num_samples']):,} "
                f"vs {int(metrics.get('fid_reference_count', 0)):,})",
            )
        )
    if "recon_fid" in metrics:  # the decoder's ceiling for any generator on this latent, at the same N and reference
        rows.append(("reconstruction FID (decoded test images, same N)", f"{metrics['recon_fid']:.1f}"))
    return ["| result | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]


def run_summary(run: LocalRun) -> str:
    """The text ``hybridmi run`` ends with."""
    lines = [f"run: {run.run_dir} ({run.runner} runner, {run.wall_s:.1f} s)"]
    page = report_page(run)
    if page is not None and page.is_file():
        lines += [f"report: {page}", f"        {page.with_suffix('.md')}", ""]
        metrics_file = page.parent / "metrics.json"
        if metrics_file.is_file():
            lines += headline_table(json.loads(metrics_file.read_text())) + [""]
    if run.runner != "inprocess":
        times = task_times(run)
        if times:
            staged = sum(t.stage_s or 0.0 for t in times)
            lines.append(
                "time per task (wall s = stage s + runner overhead s): "
                + ", ".join(f"{t.task} {t.wall_s:.1f} = {t.stage_s or 0.0:.1f} + {t.overhead_s:.1f}" for t in times)
            )
            lines.append(
                f"stages {staged:.1f} s, runner overhead {run.wall_s - staged:.1f} s "
                f"({(run.wall_s - staged) / len(times):.1f} s per task over {len(times)} tasks)"
            )
    return "\n".join(lines) + "\n"
