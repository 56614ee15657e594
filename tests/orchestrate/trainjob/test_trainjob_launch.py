"""The multi-node train step end to end against a fake Kubernetes API whose nodes are real processes.

The contract (docs/ARCHITECTURE.md): every node runs the rendered command — torchrun, then
``hybridmi stage train --config-env …`` on s3:// URIs — with the storage Secret's keys and the run's
id as env; the model comes back through object storage under the run's id. These tests run that
command as the Trainer would (PET_* env, Secret references resolved) on the loopback S3.
"""
from __future__ import annotations

import pytest
from fake_kube_api import FakeKubeAPI, Scripted
from fake_kube_api import COMPLETE, FAILED, RUNNING

from hybridmi.orchestrate.trainjob.launch import NodeSettings, model_key, run_trainjob_task
from hybridmi.orchestrate.trainjob.manifest import trainjob_name
from hybridmi.orchestrate.trainjob.status import TrainJobFailed
from hybridmi.stages.common import read_sidecar

IMAGE = "registry.example.com/hybridmi:0.1.0-abcdef012345"


def cpu_nodes(nodes: int = 1, processes: str = "") -> NodeSettings:
    """``processes`` per node through gpu_count (the fake cluster has no GPUs; torchrun starts that many anyway)."""
    return NodeSettings(image=IMAGE, nodes=nodes, gpu_type="nvidia.com/gpu" if processes else "", gpu_count=processes)


def test_one_node__trains_with_the_rendered_command_and_the_model_comes_back_through_the_store(
        tiny_cfg, dataset_dir, task_env, task_store, processes, tmp_path):
    with FakeKubeAPI(processes) as kube:
        metrics = run_trainjob_task(tiny_cfg, dataset_dir=dataset_dir, model_dir=tmp_path / "model", nodes=cpu_nodes(),
                                    env=task_env, api_client=kube.api_client(), poll_s=0.2)
    run_id = task_env["HYBRIDMI_RUN_ID"]
    assert (tmp_path / "model" / "model.pt").is_file()
    sidecar = read_sidecar(tmp_path / "model")
    assert sidecar["stage"] == "train" and sidecar["config_hash"] == tiny_cfg.hash()  # the same config reached the node
    assert metrics["steps"] > 0
    assert task_store.exists(model_key(run_id, tiny_cfg))
    # HYBRIDMI_RUN_ID reached the node: its checkpoints are mirrored under this run.
    assert task_store.list(f"checkpoints/{run_id}/{tiny_cfg.hash()}/train")
    assert [r.method for r in kube.requests][:2] == ["GET", "POST"]


@pytest.mark.parametrize("nodes, per_node", [(1, "2"), (2, "")], ids=["1 node x 2 processes", "2 nodes x 1 process"])
def test_world_size_2__the_stage_refuses_it_and_the_step_fails_with_the_trainjobs_reason(
        nodes, per_node, tiny_cfg, dataset_dir, task_env, task_store, processes, tmp_path):
    """Until the train stage runs DDP, a WORLD_SIZE > 1 launch must fail, not train N copies."""
    with FakeKubeAPI(processes) as kube:
        with pytest.raises(TrainJobFailed, match=r"failed: FailedJobs: jobset failed .*exit codes \[1"):
            run_trainjob_task(tiny_cfg, dataset_dir=dataset_dir, model_dir=tmp_path / "model",
                              nodes=cpu_nodes(nodes, per_node), env=task_env, api_client=kube.api_client(), poll_s=0.2)
    name = trainjob_name(task_env["HYBRIDMI_RUN_ID"], tiny_cfg.hash())
    for rank in range(nodes):
        log = (tmp_path / f"{name}-node-{rank}.log").read_text()
        assert "WORLD_SIZE=2: `hybridmi stage train` does not train distributed yet" in log
    assert not task_store.exists(model_key(task_env["HYBRIDMI_RUN_ID"], tiny_cfg))
    assert not (tmp_path / "model").exists()
