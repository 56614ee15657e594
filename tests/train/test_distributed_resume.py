"""kill -9 of one rank of `hybridmi stage train` on 2 gloo ranks (train.ranks=2: the task starts them through
torchrun): the job ends with one line naming that rank, no rank process outlives it, the last checkpoint is
kept, and the rerun resumes from it and ends with the model of an uninterrupted 2-rank run, bit for bit.
kill -9 of the task itself takes its ranks down with it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hybridmi.config import load_config
from hybridmi.stages import run_stage
from hybridmi.task.mirror import local_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# 256 images in global batches of 32: 8 steps an epoch, 40 in all, a checkpoint every 2 steps.
TINY = [
    "data.synthetic_classes=4",
    "data.synthetic_train=256",
    "data.synthetic_test=16",
    "model.channels=8",
    "model.cells_32=0",
    "model.cells_16=1",
    "model.decoder_expand=2",
    "model.proj_hidden=32",
    "model.proj_dim=16",
    "objective.queue_size=128",
    "objective.bn_splits=4",
    "train.batch_size=32",
    "train.epochs=5",
    "runtime.device=cpu",
    "runtime.threads=1",
    "train.checkpoint_every=2",
    "train.log_every=2",
    "optim.warmup_epochs=0.5",
    "train.ranks=2",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ranks-data")
    cfg = load_config(None, [*TINY, f"data.cache_dir={root / 'cache'}"])
    run_stage("prepare", cfg, {}, {"dataset": root / "ds"})
    return root / "ds"


def train_cmd(dataset: Path, model: Path) -> list[str]:
    sets = [arg for o in TINY for arg in ("--set", o)]
    return [
        sys.executable,
        "-m",
        "hybridmi.cli",
        "stage",
        "train",
        *sets,
        "--input",
        f"dataset={dataset}",
        "--output",
        f"model={model}",
    ]


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDMI_", "AWS_", "MINIO_"))}
    (tmp_path / "tmp").mkdir()
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp_path / "tmp"),
        "PYTHONUNBUFFERED": "1",
        "HYBRIDMI_RUN_ID": "ranks-test",
    }


def wait_for(condition, *, what: str, proc: subprocess.Popen, timeout_s: float = 300.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (exit {proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def rank_records(env: dict[str, str]) -> dict[int, dict]:
    """The launch's rank records (rank → {pid, state, ...}) in its scratch directory under TMPDIR."""
    records = {}
    for path in Path(env["TMPDIR"]).glob("hybridmi-ranks-*/rank-*.json"):
        try:
            record = json.loads(path.read_text())
        except ValueError:  # being replaced
            continue
        records[record["rank"]] = record
    return records


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def checkpoint_step(model: Path) -> int:
    found = local_checkpoint(model / "checkpoints")
    return 0 if found is None else found[1]


def test_kill9_of_one_rank__job_ends_in_one_line_and_the_rerun_resumes_bit_identically(dataset, tmp_path):
    env = base_env(tmp_path)
    reference = subprocess.run(
        train_cmd(dataset, tmp_path / "reference"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    log = tmp_path / "killed.log"
    job = subprocess.Popen(
        train_cmd(dataset, tmp_path / "model"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log, "w")
    )
    wait_for(lambda: checkpoint_step(tmp_path / "model") >= 4, what="the checkpoint of step 4", proc=job)
    records = rank_records(env)
    os.kill(records[1]["pid"], signal.SIGKILL)
    assert job.wait(timeout=300) == 1
    step = checkpoint_step(tmp_path / "model")
    last = log.read_text().strip().splitlines()[-1]
    assert re.fullmatch(
        rf"hybridmi: error: stage train on 2 ranks failed: rank 1 \(pid {records[1]['pid']}\) died "
        rf"without an error of its own \(.*\); the last checkpoint \(step {step}, .*last\.pt\) is kept "
        r"and a rerun resumes from it",
        last,
    ), last
    assert 4 <= step < 40
    assert not any(alive(r["pid"]) for r in records.values())  # torchrun stopped rank 0 as well

    rerun = subprocess.run(
        train_cmd(dataset, tmp_path / "model"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(rf"\[rank 0\] .*resumed from \S+ at step {step} of 40", rerun.stderr), rerun.stderr[-3000:]
    want, got = (
        torch.load(tmp_path / run / "model.pt", weights_only=True)["state_dict"] for run in ("reference", "model")
    )
    assert want.keys() == got.keys() and all(torch.equal(v, got[k]) for k, v in want.items())
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["ranks"] == 2


def test_kill9_of_the_task__its_ranks_do_not_outlive_it(dataset, tmp_path):
    env = base_env(tmp_path)
    job = subprocess.Popen(
        train_cmd(dataset, tmp_path / "model"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    records = wait_for(lambda: (r := rank_records(env)) and len(r) == 2 and r, what="both ranks to start", proc=job)
    job.kill()
    job.wait(timeout=60)
    deadline = time.monotonic() + 120
    while any(alive(r["pid"]) for r in records.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(r["pid"]) for r in records.values())
