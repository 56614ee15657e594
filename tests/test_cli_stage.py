"""``hybridmi stage`` as a TrainJob's nodes run it: the config from an environment variable, and the refusal of a
distributed launch (WORLD_SIZE > 1) of a stage that trains in one process — one line, before anything is written
(the train stage trains distributed: tests/task/trainjob, tests/train/test_distributed_*)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hybridmi.config import config_to_text, load_config
from hybridmi.stages.common import read_sidecar

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def stage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDMI_", "WORLD_SIZE"))}
    return subprocess.run(
        [sys.executable, "-m", "hybridmi.cli", "stage", *args],
        capture_output=True,
        text=True,
        env={**clean, "PYTHONPATH": str(ROOT), "HYBRIDMI_RUN_ID": "cli-test", **env},
        timeout=300,
    )


def test_config_env__the_stage_runs_the_config_the_variable_holds(tmp_path):
    cfg = load_config(SMOKE, ["data.synthetic_train=64", "data.synthetic_test=16", "data.synthetic_classes=4"])
    done = stage(
        "prepare",
        "--config-env",
        "CFG",
        "--output",
        f"dataset={tmp_path / 'dataset'}",
        env={"CFG": config_to_text(cfg)},
    )
    assert done.returncode == 0, done.stderr
    assert read_sidecar(tmp_path / "dataset")["config_hash"] == cfg.hash()


def test_config_env__an_unset_variable_is_a_config_error(tmp_path):
    done = stage("prepare", "--config-env", "NOT_SET_ANYWHERE", "--output", f"dataset={tmp_path / 'd'}", env={})
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "hybridmi: config error: environment variable NOT_SET_ANYWHERE (--config-env) is not set"
    )


def test_world_size_above_1__a_one_process_stage_is_refused_in_one_line_before_anything_is_written(tmp_path):
    done = stage(
        "prepare",
        "--config",
        str(SMOKE),
        "--output",
        f"dataset={tmp_path / 'dataset'}",
        env={"WORLD_SIZE": "8", "RANK": "3"},
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "hybridmi: error: WORLD_SIZE=8: stage prepare runs in one process; only train trains on several ranks"
    ]
    assert not (tmp_path / "dataset").exists()


def test_world_size_1__is_an_ordinary_launch(tmp_path):
    done = stage(
        "prepare",
        "--config",
        str(SMOKE),
        "--set",
        "data.synthetic_train=64",
        "--set",
        "data.synthetic_test=16",
        "--output",
        f"dataset={tmp_path / 'dataset'}",
        env={"WORLD_SIZE": "1", "RANK": "0"},
    )
    assert done.returncode == 0, done.stderr
