"""How a failure reads: a failed rank's whole traceback in the task's log and one line naming it; one line for the
project's own errors (-v adds the traceback); a traceback for anything else."""

from __future__ import annotations

import sys

import pytest
from faultkit import SMOKE, hybridmi_cmd, last_line, run

from hybridmi.config import config_to_text, load_config
from hybridmi.task.launch import RankFailure, launch_ranks

RAISE_INSIDE_PREPARE = """
import sys
import hybridmi.stages.prepare as prepare

def run(*args, **kwargs):
    raise RuntimeError("a bug inside the stage")

prepare.run = run
from hybridmi.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_launch_ranks__a_failed_rank_leaves_its_whole_traceback_in_the_log_and_one_line_in_the_error(
    env, tmp_path, capfd
):
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(RankFailure) as failure:
        launch_ranks(
            "probe",
            config_to_text(load_config(SMOKE)),
            inputs={"dataset": missing, "model": missing},
            outputs={"metrics": tmp_path / "metrics"},
            env={**env, "OMP_NUM_THREADS": "1"},
            resume_from=None,
            nproc=1,
        )
    message = str(failure.value)
    assert message.startswith("stage probe on 1 ranks failed: rank 0: MissingInput: stage probe: input dataset")
    assert str(missing) in message
    assert "\n" not in message
    log = capfd.readouterr().err
    assert "[rank 0] " in log and "Traceback (most recent call last):" in log
    assert 'hybridmi/stages/__init__.py", line' in log  # the frame that raised, not only the message


def test_cli__a_runtime_error_inside_a_stage_keeps_its_traceback(env, tmp_path):
    cmd = [sys.executable, "-c", RAISE_INSIDE_PREPARE, "stage", "prepare", "--config", str(SMOKE)]
    done = run([*cmd, "--output", f"dataset={tmp_path / 'ds'}"], env)
    assert done.returncode == 1
    assert "Traceback (most recent call last):" in done.stderr
    assert last_line(done.stderr) == "RuntimeError: a bug inside the stage"


def test_cli__a_store_error_is_one_line_and_verbose_adds_its_traceback(env, tmp_path):
    io = ["--input", f"dataset={tmp_path}", "--output", "model=s3://bucket/model"]  # and no endpoint set
    cmd = hybridmi_cmd("stage", "train", "--config", str(SMOKE), *io)
    done = run(cmd, env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert last_line(done.stderr).startswith("hybridmi: error: HYBRIDMI_S3_ENDPOINT is not set")
    verbose = run([*cmd[:3], "-v", *cmd[3:]], env)
    assert verbose.returncode == 1 and "Traceback (most recent call last):" in verbose.stderr
    assert last_line(verbose.stderr) == last_line(done.stderr)
