"""The train task on N ranks of this node: the task runs itself again under torchrun, one process per rank."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from hybridmi.config import Config
from hybridmi.errors import TaskFailed
from hybridmi.runtime import choose_device, write_json
from hybridmi.task.mirror import checkpoint_dir, local_checkpoint
from hybridmi.task.scratch import scratch_dir
from hybridmi.train.distributed import Ranks, local_rank_count

log = logging.getLogger(__name__)

DISTRIBUTED_STAGES = ("train",)  # stages that train on several ranks (the DDIM trainer runs in one process)
SCRATCH_PREFIX = "hybridmi-ranks-"
STOP_GRACE_S = 60.0  # how long torchrun gets to stop its ranks when this process is stopped


class RankFailure(TaskFailed):
    """A rank of a launch failed; the message names it and the cause in one line."""


def ranks_to_launch(stage: str, cfg: Config, ranks: Ranks) -> int:
    """How many ranks this task must start: ``train.ranks`` for the train stage, unless already one of a launch."""
    if stage not in DISTRIBUTED_STAGES or ranks.distributed:
        return 1
    return local_rank_count(cfg.train.ranks, choose_device(cfg.runtime.device))


def launch_ranks(
    stage: str,
    config_text: str,
    *,
    inputs: Mapping[str, Path],
    outputs: Mapping[str, Path],
    env: Mapping[str, str],
    resume_from: str | None,
    nproc: int,
) -> dict[str, Any]:
    """Run ``stage`` on ``nproc`` local ranks through torchrun; rank 0's result {metrics, metadata}."""
    with scratch_dir(SCRATCH_PREFIX) as scratch:
        directory = scratch.path
        write_json(
            directory / "task.json",
            {
                "stage": stage,
                "config": config_text,
                "resume_from": resume_from,
                "inputs": {k: str(v) for k, v in inputs.items()},
                "outputs": {k: str(v) for k, v in outputs.items()},
            },
        )
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        command += ["--max-restarts=0", "-m", "hybridmi.task.rank", str(directory)]
        log.info("stage %s on %d ranks of this node (torchrun)", stage, nproc)
        code = _wait(subprocess.Popen(command, env=dict(env), preexec_fn=_stop_with_parent()))
        if code != 0:
            raise RankFailure(
                f"stage {stage} on {nproc} ranks failed: {root_cause(directory, nproc)}; "
                f"{_checkpoint_hint(stage, outputs)}"
            )
        return json.loads((directory / "result.json").read_text())


def _stop_with_parent() -> Callable[[], None] | None:
    """What the child runs before exec: ask for SIGTERM when this process dies, even by SIGKILL (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _wait(process: subprocess.Popen) -> int:
    """torchrun's exit status; if this process is stopped meanwhile (SIGTERM → SystemExit), torchrun is stopped too."""
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            process.terminate()  # torchrun stops every rank on SIGTERM
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class RankRecord:
    """Rank ``rank``'s ``rank-<r>.json`` in a launch directory: rewritten atomically at every change of state."""

    def __init__(self, directory: Path, rank: int) -> None:
        self.path, self.rank = directory / f"rank-{rank}.json", rank

    def write(self, state: str, error: str | None = None) -> None:
        write_json(
            self.path, {"rank": self.rank, "pid": os.getpid(), "state": state, "error": error, "time": time.time()}
        )

    def read(self) -> dict[str, Any] | None:
        """The record; None when the rank wrote none (never started) or it cannot be read."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None


def root_cause(directory: Path, nproc: int) -> str:
    """One line on why a launch failed, from the ranks' records in ``directory``."""
    records = {rank: RankRecord(directory, rank).read() for rank in range(nproc)}
    died = [rank for rank, record in records.items() if record is not None and record["state"] == "running"]
    if died:
        who = ", ".join(f"rank {rank} (pid {records[rank]['pid']})" for rank in died)
        return f"{who} died without an error of its own (killed by a signal: kill -9, the OOM killer, a node failure)"
    failed = sorted(
        (record["time"], rank) for rank, record in records.items() if record and record["state"] == "failed"
    )
    if failed:
        rank = failed[0][1]
        return f"rank {rank}: {records[rank]['error']}"
    missing = [rank for rank, record in records.items() if record is None]
    if missing:
        return f"rank(s) {', '.join(map(str, missing))} never started (see torchrun's messages above)"
    return "torchrun exited non-zero (see its messages above)"


def _checkpoint_hint(stage: str, outputs: Mapping[str, Path]) -> str:
    directory = checkpoint_dir(stage, outputs)
    found = local_checkpoint(directory) if directory is not None else None
    if found is None:
        return "no checkpoint was written; a rerun starts from the beginning"
    return f"the last checkpoint (step {found[1]}, {found[0]}) is kept and a rerun resumes from it"
