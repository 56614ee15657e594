"""A deterministic failure under kfp.local fails at once: one attempt, no 30 s / 60 s retry backoff, one line naming
the stage. The compiled (cluster) pipeline keeps its retries for preempted GPU pods."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from hybridmi.runners.compile import compile_pipeline, without_retries
from pipelines import alpha_sweep, hybridmi_pipeline, rerun_pipeline

ROOT = Path(__file__).resolve().parents[2]


def _retries(spec: dict) -> dict[str, int]:
    dags = [spec["root"].get("dag", {}), *(c.get("dag", {}) for c in spec["components"].values())]
    return {
        name: task["retryPolicy"]["maxRetryCount"]
        for dag in dags
        for name, task in dag.get("tasks", {}).items()
        if "retryPolicy" in task
    }


def test_without_retries__clears_every_tasks_retry(tmp_path):
    for i, pipeline_func in enumerate((hybridmi_pipeline, alpha_sweep, rerun_pipeline("train"))):
        spec = next(yaml.safe_load_all(compile_pipeline(pipeline_func, tmp_path / f"{i}.yaml").read_text()))
        before = _retries(spec)
        assert before and set(before.values()) == {2}  # GPU tasks retry on a cluster
        assert _retries(without_retries(spec)) == {}


def test_run__missing_input_fails_once_without_backoff_in_one_line_naming_the_stage(tmp_path):
    not_a_dataset = tmp_path / "not-a-dataset"
    not_a_dataset.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybridmi.cli",
            "run",
            "--config",
            str(ROOT / "configs" / "smoke.yaml"),
            "--root",
            str(tmp_path / "runs"),
            "--only",
            "train",
            "--from",
            f"dataset={not_a_dataset}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hybridmi: error: stage train failed: MissingInput: ") and str(not_a_dataset) in last
    log = done.stdout + done.stderr
    assert "Retrying" not in log and "attempt 2" not in log  # kfp.local's retry loop never ran
