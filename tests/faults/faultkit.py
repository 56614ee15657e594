"""Helpers of the fault matrix (tests/faults): command lines, environments, waiting on a state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))  # store_testkit: clients, TcpProxy

from store_testkit import TEST_KEY, TEST_SECRET  # noqa: E402
from tiny_config import ONE_THREAD, PROBE, TRAIN, changed  # noqa: E402

from hybridmi.task.mirror import local_checkpoint  # noqa: E402

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
# A run of a few seconds: 128 images, batches of 32 (4 steps an epoch), a checkpoint every 2 steps.
TINY = changed([*TRAIN, ONE_THREAD, *PROBE], "train.epochs=1", "train.checkpoint_every=2", "train.log_every=1")


def sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def hybridmi_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hybridmi.cli", *args]


def base_env(tmp_path: Path) -> dict[str, str]:
    """This interpreter's env without any storage settings of the caller, one thread, a private temp dir, and
    one run id per test: every process a test starts is a pod (or a retried pod) of the same pipeline run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HYBRIDMI_", "AWS_", "MINIO_")) and k not in ("accesskey", "secretkey")
    }
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
        TMPDIR=str(scratch),
        PYTHONUNBUFFERED="1",
        HYBRIDMI_RUN_ID=f"faults-{uuid.uuid4().hex[:8]}",
    )
    return env


def s3_env(
    env: dict[str, str], endpoint: str, *, store: str | None = None, attempts: int = 2, delay_s: float = 0.05
) -> dict[str, str]:
    out = {
        **env,
        "HYBRIDMI_S3_ENDPOINT": f"http://{endpoint}",
        "AWS_ACCESS_KEY_ID": TEST_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET,
        "HYBRIDMI_S3_RETRY_ATTEMPTS": str(attempts),
        "HYBRIDMI_S3_RETRY_DELAY_S": str(delay_s),
    }
    if store:
        out["HYBRIDMI_STORE"] = store
    return out


def run(cmd: list[str], env: dict[str, str], *, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def stage(
    name: str, *, overrides: list[str] = (), inputs: dict[str, object] = {}, outputs: dict[str, object] = {}
) -> list[str]:
    """The command line of ``hybridmi stage NAME`` on the smoke preset with the TINY overrides."""
    io = [
        arg
        for kind, pairs in (("--input", inputs), ("--output", outputs))
        for k, v in pairs.items()
        for arg in (kind, f"{k}={v}")
    ]
    return hybridmi_cmd("stage", name, "--config", str(SMOKE), *sets([*TINY, *overrides]), *io)


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a command with stdout+stderr into ``log`` (read it with ``log.read_text()``)."""
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True)


def wait_for(
    condition: Callable[[], T], *, what: str, timeout_s: float = 120.0, proc: subprocess.Popen | None = None
) -> T:
    """Poll ``condition`` until it returns something truthy (a state, never a duration, is what tests assert)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def checkpoint_step(checkpoints: Path) -> int:
    """The step of the checkpoint in ``checkpoints`` (0 when there is none yet, or it is being replaced)."""
    found = local_checkpoint(checkpoints)
    return 0 if found is None else found[1]


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
