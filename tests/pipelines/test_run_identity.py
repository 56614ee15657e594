"""Run-scoped checkpoints against the moto S3 server: a new run of the same config starts fresh, a retried task
of one run resumes from its mirrored checkpoint, and resuming another run is explicit. Each "pod" is a fresh
output directory, as on a cluster."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from hybridmi.cluster import RUN_ID_VAR
from hybridmi.config import config_from_dict, load_config
from hybridmi.metrics import StageMetrics
from hybridmi.store import CheckpointSync, store_from_env
from hybridmi.task.identity import RunIdentity, task_identity
from hybridmi.task.run import STORE_VAR, run_task

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def env(s3_store_uri):
    """A task environment with the store: the fixture put the endpoint and credentials into this process's env."""
    return {**os.environ, STORE_VAR: s3_store_uri}


@pytest.fixture(scope="module")
def cfg(tiny):
    return load_config(SMOKE, tiny)


@pytest.fixture(scope="module")
def dataset(cfg, env, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepare") / "dataset"
    run_task("prepare", cfg, inputs={}, outputs={"dataset": out}, env={**env, RUN_ID_VAR: "prepare-run"})
    return out


def train_in_a_fresh_pod(cfg, dataset, env, tmp_path, run_id, **kwargs):
    pod = tmp_path / f"pod-{run_id}-{len(list(tmp_path.iterdir()))}"
    return run_task(
        "train",
        cfg,
        inputs={"dataset": dataset},
        outputs={"model": pod / "model"},
        env={**env, RUN_ID_VAR: run_id},
        **kwargs,
    ).metrics


def latest(env, run_id, cfg):
    return CheckpointSync(
        store_from_env(env[STORE_VAR], env), RunIdentity(run_id).checkpoint_key(cfg, "train")
    ).latest_step()


def test_same_config_twice__two_runs_each_train_from_scratch(cfg, dataset, env, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hybridmi"):
        first = train_in_a_fresh_pod(cfg, dataset, env, tmp_path, "run-a")
        second = train_in_a_fresh_pod(cfg, dataset, env, tmp_path, "run-b")
    assert not any("resum" in r.getMessage() for r in caplog.records)  # neither continued a checkpoint
    assert "loss" in first and "loss" in second
    assert latest(env, "run-a", cfg) == latest(env, "run-b", cfg) == first["steps"] == second["steps"] > 0


def test_retried_task_of_one_run__resumes_from_its_checkpoint(cfg, dataset, env, tmp_path, caplog):
    done = train_in_a_fresh_pod(cfg, dataset, env, tmp_path, "run-r")
    with caplog.at_level(logging.INFO, logger="hybridmi"):
        retried = train_in_a_fresh_pod(cfg, dataset, env, tmp_path, "run-r")
    assert retried["steps"] == done["steps"] and retried["loss"] == done["loss"]  # the loss saved with the checkpoint
    assert any("resuming from checkpoint step" in r.getMessage() for r in caplog.records)
    steps = int(done["steps"])
    assert any(
        f"at step {steps} of {steps}" in r.getMessage() for r in caplog.records
    )  # continued at the end: nothing retrained


def test_resume_from__continues_another_runs_checkpoint_only_when_asked(cfg, dataset, env, tmp_path):
    done = train_in_a_fresh_pod(cfg, dataset, env, tmp_path, "run-src")
    resumed = train_in_a_fresh_pod(cfg, dataset, env, tmp_path, "run-next", resume_from="run-src")
    assert resumed["steps"] == done["steps"] and resumed["loss"] == done["loss"]
    with pytest.raises(
        FileNotFoundError, match=r"resume_from=run-none: no checkpoint of that run under checkpoints/run-none/"
    ):
        train_in_a_fresh_pod(cfg, dataset, env, tmp_path, "run-later", resume_from="run-none")


def test_resume_from__accepts_changed_monitoring_sampling_fid_and_eval_sections(cfg, dataset, env, tmp_path, caplog):
    done = train_in_a_fresh_pod(cfg, dataset, env, tmp_path, "run-m")
    changed = cfg.model_copy(deep=True)
    changed.monitoring.pushgateway_url = "http://127.0.0.1:9"  # closed port: one warning, training unaffected
    changed.sampling.num_samples, changed.fid.reference_samples, changed.eval.probe_epochs = 7, 11, 3
    assert changed.hash() != cfg.hash() and changed.training_hash() == cfg.training_hash()
    with caplog.at_level(logging.INFO, logger="hybridmi"):
        resumed = train_in_a_fresh_pod(changed, dataset, env, tmp_path, "run-m2", resume_from="run-m")
    assert resumed["steps"] == done["steps"] and resumed["loss"] == done["loss"]
    assert any("resuming from checkpoint step" in r.getMessage() for r in caplog.records)


def test_checkpoint_keys__separate_runs_and_the_configs_within_a_run():
    a, b = config_from_dict({"objective": {"alpha": 0.1}}), config_from_dict({"objective": {"alpha": 0.9}})
    run = RunIdentity("2f1c-run")
    assert run.checkpoint_key(a, "train") == f"checkpoints/2f1c-run/{a.training_hash()}/train"
    assert run.checkpoint_key(a, "train") != run.checkpoint_key(b, "train")  # the α sweep's branches of one run
    assert RunIdentity("other").checkpoint_key(a, "train") != run.checkpoint_key(a, "train")


def test_metrics__series_carry_the_run_id_and_the_stage():
    cfg = config_from_dict({"name": "m"})
    identity = task_identity({RUN_ID_VAR: "5e0d2c4a-run"})
    metrics = StageMetrics.from_config(cfg, stage="train", run_id=identity.metrics_run_id(cfg))
    assert metrics.labels == {"run_id": f"5e0d2c4a-run.{cfg.hash()[:8]}", "stage": "train"}
    named = config_from_dict({"monitoring": {"run_id": "kind-e2e-1"}})
    assert identity.metrics_run_id(named) == "kind-e2e-1"  # an explicit monitoring.run_id wins


def test_task_identity__reads_the_env_and_refuses_ids_that_are_not_keys(caplog):
    assert task_identity({RUN_ID_VAR: "r1", "HYBRIDMI_RESUME_FROM": "r0"}) == RunIdentity("r1", "r0")
    assert task_identity({RUN_ID_VAR: "r1", "HYBRIDMI_RESUME_FROM": "r0"}, resume_from="") == RunIdentity("r1", "")
    with caplog.at_level(logging.WARNING):
        adhoc = task_identity({})
    assert adhoc.run_id.startswith("adhoc-") and RUN_ID_VAR in caplog.text
    with pytest.raises(ValueError, match="is not a run id"):
        task_identity({RUN_ID_VAR: "../../etc"})
