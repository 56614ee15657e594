"""The train task's own launch on N ranks: what a failed launch is blamed on, and what runs on a rank at all.

The launch itself (torchrun, a rank killed with -9, the rerun) runs in tests/train/test_distributed_resume.py.
"""

from __future__ import annotations

import pytest

from hybridmi.config import load_config
from hybridmi.runtime import write_json
from hybridmi.task.launch import ranks_to_launch, root_cause
from hybridmi.task.run import run_task
from hybridmi.train.distributed import Ranks


def record(directory, rank, state, *, pid, time, error=None):
    write_json(
        directory / f"rank-{rank}.json", {"rank": rank, "pid": pid, "state": state, "error": error, "time": time}
    )


def test_root_cause__a_rank_that_died_without_a_record_of_its_end_comes_first(tmp_path):
    record(tmp_path, 0, "failed", pid=10, time=5.0, error="RuntimeError: Connection closed by peer")
    record(tmp_path, 1, "running", pid=11, time=1.0)
    assert root_cause(tmp_path, 2).startswith("rank 1 (pid 11) died without an error of its own (killed by a signal")


def test_root_cause__else_the_first_recorded_error_and_not_the_ranks_stopped_after_it(tmp_path):
    record(tmp_path, 0, "terminated", pid=10, time=9.0)
    record(tmp_path, 1, "failed", pid=11, time=7.0, error="NonFiniteError: non-finite loss at step 3")
    record(tmp_path, 2, "failed", pid=12, time=8.0, error="RuntimeError: Connection closed by peer")
    assert root_cause(tmp_path, 3) == "rank 1: NonFiniteError: non-finite loss at step 3"


def test_root_cause__ranks_that_never_started(tmp_path):
    record(tmp_path, 0, "terminated", pid=10, time=1.0)
    assert root_cause(tmp_path, 2) == "rank(s) 1 never started (see torchrun's messages above)"


def test_ranks_to_launch__only_the_train_stage_and_only_outside_a_launch():
    cfg = load_config(None, ["train.ranks=2", "runtime.device=cpu"])
    assert ranks_to_launch("train", cfg, Ranks()) == 2
    assert ranks_to_launch("train", cfg, Ranks(rank=0, world_size=2)) == 1  # already a rank: train, do not launch
    assert ranks_to_launch("ddim", cfg, Ranks()) == 1
    assert ranks_to_launch("train", load_config(None, ["runtime.device=cpu"]), Ranks()) == 1  # auto without CUDA


def test_run_task__a_stage_that_trains_in_one_process_refuses_world_size_above_one(tmp_path):
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    with pytest.raises(
        ValueError, match="WORLD_SIZE=2: stage probe runs in one process; only train trains on several ranks"
    ):
        run_task("probe", load_config(None, []), inputs={}, outputs={"metrics": tmp_path / "m"}, env=env)
    assert not (tmp_path / "m").exists()
