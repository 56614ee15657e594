"""The multi-node train step end to end against a fake Kubernetes API whose nodes are real processes.

The contract (docs/ARCHITECTURE.md): every node runs the rendered command — torchrun, then
``hybridmi stage train --config-env …`` on s3:// URIs — with the storage Secret's keys and the run's
id as env; the model comes back through object storage under the run's id. These tests run that
command as the Trainer would (PET_* env, Secret references resolved) on the loopback S3.
"""

from __future__ import annotations

import json
import logging

import pytest
from crd_schema import OLDER_CRD_FILE
from fake_kube_api import COMPLETE, FAILED, RUNNING, TASK_POD, FakeKubeAPI, Scripted

from hybridmi.stages.common import read_sidecar
from hybridmi.task.trainjob.api import TrainJobApiError
from hybridmi.task.trainjob.launch import model_key, run_trainjob_task
from hybridmi.task.trainjob.manifest import NodeSettings, trainjob_name
from hybridmi.task.trainjob.status import TrainJobFailed

IMAGE = "registry.example.com/hybridmi:0.1.0-abcdef012345"


def cpu_nodes(nodes: int = 1, processes: str = "") -> NodeSettings:
    """``processes`` per node through gpu_count (the fake cluster has no GPUs; torchrun starts that many anyway)."""
    return NodeSettings(image=IMAGE, nodes=nodes, gpu_type="nvidia.com/gpu" if processes else "", gpu_count=processes)


def test_one_node__trains_with_the_rendered_command_and_the_model_comes_back_through_the_store(
    tiny_cfg, dataset_dir, task_env, task_store, processes, tmp_path
):
    with FakeKubeAPI(processes) as kube:
        metrics = run_trainjob_task(
            tiny_cfg,
            dataset_dir=dataset_dir,
            model_dir=tmp_path / "model",
            nodes=cpu_nodes(),
            env=task_env,
            api_client=kube.api_client(),
            poll_s=0.2,
        )
    run_id = task_env["HYBRIDMI_RUN_ID"]
    assert (tmp_path / "model" / "model.pt").is_file()
    sidecar = read_sidecar(tmp_path / "model")
    assert sidecar["stage"] == "train" and sidecar["config_hash"] == tiny_cfg.hash()  # the same config reached the node
    assert metrics["steps"] > 0
    assert task_store.exists(model_key(run_id, tiny_cfg))
    # HYBRIDMI_RUN_ID reached the node: its checkpoints are mirrored under this run.
    assert task_store.list(f"checkpoints/{run_id}/{tiny_cfg.training_hash()}/train")
    assert [r.method for r in kube.requests][:2] == ["GET", "POST"]
    assert "fieldValidation=Strict" in kube.methods("POST")[0].query
    assert kube.methods("DELETE") and kube.jobs == {}  # finished and read: deleted


@pytest.mark.parametrize("nodes, per_node", [(1, "2"), (2, "")], ids=["1 node x 2 processes", "2 nodes x 1 process"])
def test_world_size_2__the_processes_train_as_one_ddp_run_and_rank_0_alone_publishes_the_model(
    nodes, per_node, tiny_cfg, dataset_dir, task_env, task_store, processes, tmp_path
):
    with FakeKubeAPI(processes) as kube:
        metrics = run_trainjob_task(
            tiny_cfg,
            dataset_dir=dataset_dir,
            model_dir=tmp_path / "model",
            nodes=cpu_nodes(nodes, per_node),
            env=task_env,
            api_client=kube.api_client(),
            poll_s=0.2,
        )
    assert metrics["ranks"] == 2 and metrics["steps"] > 0
    assert read_sidecar(tmp_path / "model")["config_hash"] == tiny_cfg.hash()
    assert task_store.exists(model_key(task_env["HYBRIDMI_RUN_ID"], tiny_cfg))
    name = trainjob_name(task_env["HYBRIDMI_RUN_ID"], tiny_cfg.hash())
    logs = "".join((tmp_path / f"{name}-node-{rank}.log").read_text() for rank in range(nodes))
    assert logs.count("published model to") == 1  # rank 0 only


def _publish_model(store, key, tmp_path, cfg) -> None:
    """What rank 0 leaves in the store: a finished model artifact (here a stand-in file plus the sidecar)."""
    from hybridmi.stages.common import finish_output

    out = tmp_path / "published"
    out.mkdir()
    (out / "model.pt").write_bytes(b"weights")
    finish_output(out, cfg, stage="train", metrics={"steps": 3.0})
    store.put_dir(out, key)


def test_retried_task__replaces_the_failed_trainjob_an_earlier_attempt_kept_and_takes_the_new_ones_model(
    tiny_cfg, dataset_dir, task_env, task_store, tmp_path
):
    class SecondRunPublishes(Scripted):
        def start(self, obj):
            super().start(obj)
            if self.created == 2:  # the second TrainJob's rank 0
                _publish_model(task_store, model_key(task_env["HYBRIDMI_RUN_ID"], tiny_cfg), tmp_path, tiny_cfg)

    with FakeKubeAPI(SecondRunPublishes([RUNNING, FAILED], [RUNNING, RUNNING, COMPLETE])) as kube:
        with pytest.raises(TrainJobFailed, match="failed: FailedJobs"):
            run_trainjob_task(
                tiny_cfg,
                dataset_dir=dataset_dir,
                model_dir=tmp_path / "first",
                nodes=cpu_nodes(2),
                env={**task_env, "HYBRIDMI_KEEP_TRAINJOB": "true"},
                api_client=kube.api_client(),
                poll_s=0.01,
            )
        assert not kube.methods("DELETE") and len(kube.jobs) == 1  # kept
        kube.requests.clear()
        metrics = run_trainjob_task(
            tiny_cfg,
            dataset_dir=dataset_dir,
            model_dir=tmp_path / "model",
            nodes=cpu_nodes(2),
            env=task_env,
            api_client=kube.api_client(),
            poll_s=0.01,
        )
    assert metrics == {"steps": 3.0}
    assert (tmp_path / "model" / "model.pt").read_bytes() == b"weights"
    # The failed one is gone before the new one is created (same name: same run, same config).
    assert [r.method for r in kube.requests][:4] == ["GET", "DELETE", "GET", "POST"]
    assert "propagationPolicy=Foreground" in kube.methods("DELETE")[0].query


def test_retried_task__waits_for_the_trainjob_an_earlier_attempt_left_running(
    tiny_cfg, dataset_dir, task_env, task_store, tmp_path
):
    from hybridmi.task.trainjob.api import TrainJobs
    from hybridmi.task.trainjob.launch import run_trainjob

    with FakeKubeAPI(Scripted([RUNNING, RUNNING, COMPLETE])) as kube:
        body = {"metadata": {"name": trainjob_name(task_env["HYBRIDMI_RUN_ID"], tiny_cfg.hash())}}
        kube.jobs[body["metadata"]["name"]] = body  # what the earlier attempt created
        kube.controller.start(body)
        state = run_trainjob(TrainJobs(kube.api_client(), "kubeflow"), {**body, "spec": {"trainer": {}}}, poll_s=0.01)
    assert state.phase == "Complete"
    assert not kube.methods("POST") and not kube.methods("DELETE")


def test_model_already_published__is_fetched_without_a_trainjob(tiny_cfg, dataset_dir, task_env, task_store, tmp_path):
    _publish_model(task_store, model_key(task_env["HYBRIDMI_RUN_ID"], tiny_cfg), tmp_path, tiny_cfg)
    with FakeKubeAPI(Scripted([FAILED])) as kube:
        run_trainjob_task(
            tiny_cfg,
            dataset_dir=dataset_dir,
            model_dir=tmp_path / "model",
            nodes=cpu_nodes(2),
            env=task_env,
            api_client=kube.api_client(),
            poll_s=0.01,
        )
    assert (tmp_path / "model" / "model.pt").is_file()
    assert kube.requests == []


def test_complete_without_a_published_model__fails_naming_where_it_was_expected(
    tiny_cfg, dataset_dir, task_env, task_store, tmp_path
):
    with FakeKubeAPI(Scripted([COMPLETE])) as kube:
        with pytest.raises(
            RuntimeError, match=r"completed but no model was published at s3://trainjob-\w+/hybridmi/runs/"
        ):
            run_trainjob_task(
                tiny_cfg,
                dataset_dir=dataset_dir,
                model_dir=tmp_path / "model",
                nodes=cpu_nodes(2),
                env=task_env,
                api_client=kube.api_client(),
                poll_s=0.01,
            )
    assert not (tmp_path / "model").exists()


def test_without_an_s3_store__refuses_before_creating_anything(tiny_cfg, dataset_dir, task_env, tmp_path):
    env = {**task_env, "HYBRIDMI_STORE": str(tmp_path / "local-store")}
    with FakeKubeAPI(Scripted([COMPLETE])) as kube:
        with pytest.raises(ValueError, match="HYBRIDMI_STORE must be an s3:// store"):
            run_trainjob_task(
                tiny_cfg,
                dataset_dir=dataset_dir,
                model_dir=tmp_path / "model",
                nodes=cpu_nodes(2),
                env=env,
                api_client=kube.api_client(),
                poll_s=0.01,
            )
    assert kube.requests == []


def test_failure__is_recorded_for_the_local_runner_as_the_train_stage(
    tiny_cfg, dataset_dir, task_env, task_store, tmp_path
):
    env = {**task_env, "HYBRIDMI_ERROR_DIR": str(tmp_path / "errors")}
    with FakeKubeAPI(Scripted([FAILED])) as kube:
        with pytest.raises(TrainJobFailed):
            run_trainjob_task(
                tiny_cfg,
                dataset_dir=dataset_dir,
                model_dir=tmp_path / "model",
                nodes=cpu_nodes(2),
                env=env,
                api_client=kube.api_client(),
                poll_s=0.01,
            )
    record = json.loads((tmp_path / "errors" / "train.json").read_text())
    assert record["stage"] == "train" and "FailedJobs" in record["error"]


def _published_on_start(task_env, task_store, tmp_path, cfg):
    """A controller whose TrainJob's rank 0 publishes the model as it starts."""

    class Publishes(Scripted):
        def start(self, obj):
            super().start(obj)
            _publish_model(task_store, model_key(task_env["HYBRIDMI_RUN_ID"], cfg), tmp_path, cfg)

    return Publishes([RUNNING, COMPLETE])


def test_trainjob__is_owned_by_the_task_pod_and_deleted_once_its_model_is_in_the_store(
    tiny_cfg, dataset_dir, task_env, task_store, tmp_path
):
    with FakeKubeAPI(_published_on_start(task_env, task_store, tmp_path, tiny_cfg)) as kube:
        run_trainjob_task(
            tiny_cfg,
            dataset_dir=dataset_dir,
            model_dir=tmp_path / "model",
            nodes=cpu_nodes(2),
            env=task_env,
            api_client=kube.api_client(),
            poll_s=0.01,
        )
    (post,) = kube.methods("POST")
    assert post.body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": TASK_POD[0], "uid": TASK_POD[1], "blockOwnerDeletion": False}
    ]
    assert [r.method for r in kube.requests][-2:] == ["GET", "DELETE"]  # Complete, then deleted
    assert "propagationPolicy=Foreground" in kube.methods("DELETE")[0].query
    assert kube.jobs == {} and (tmp_path / "model" / "model.pt").is_file()


def test_failed_trainjob__is_deleted_once_its_reason_is_read(tiny_cfg, dataset_dir, task_env, task_store, tmp_path):
    with FakeKubeAPI(Scripted([RUNNING, FAILED])) as kube:
        with pytest.raises(TrainJobFailed, match="failed: FailedJobs"):
            run_trainjob_task(
                tiny_cfg,
                dataset_dir=dataset_dir,
                model_dir=tmp_path / "model",
                nodes=cpu_nodes(2),
                env=task_env,
                api_client=kube.api_client(),
                poll_s=0.01,
            )
    assert [r.method for r in kube.requests][-2:] == ["GET", "DELETE"] and kube.jobs == {}


@pytest.mark.parametrize("statuses", [[COMPLETE], [FAILED]], ids=["complete", "failed"])
def test_keep_trainjob__leaves_the_finished_trainjob_in_place(
    statuses, tiny_cfg, dataset_dir, task_env, task_store, tmp_path
):
    env = {**task_env, "HYBRIDMI_KEEP_TRAINJOB": "1"}
    with FakeKubeAPI(Scripted(statuses)) as kube:
        with pytest.raises(RuntimeError):  # Complete without a model, or Failed
            run_trainjob_task(
                tiny_cfg,
                dataset_dir=dataset_dir,
                model_dir=tmp_path / "model",
                nodes=cpu_nodes(2),
                env=env,
                api_client=kube.api_client(),
                poll_s=0.01,
            )
        assert not kube.methods("DELETE") and len(kube.jobs) == 1


def test_without_the_pod_env__the_trainjob_has_no_owner_and_one_warning_says_so(
    tiny_cfg, dataset_dir, task_env, task_store, tmp_path, caplog
):
    env = {k: v for k, v in task_env.items() if k not in ("HYBRIDMI_POD_NAME", "HYBRIDMI_POD_UID")}
    with FakeKubeAPI(_published_on_start(task_env, task_store, tmp_path, tiny_cfg)) as kube:
        with caplog.at_level(logging.WARNING, logger="hybridmi.task.trainjob"):
            run_trainjob_task(
                tiny_cfg,
                dataset_dir=dataset_dir,
                model_dir=tmp_path / "model",
                nodes=cpu_nodes(2),
                env=env,
                api_client=kube.api_client(),
                poll_s=0.01,
            )
    assert "ownerReferences" not in kube.methods("POST")[0].body["metadata"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "HYBRIDMI_POD_NAME and HYBRIDMI_POD_UID are not set: the TrainJob will not go with the task's pod"
    ]
    assert kube.jobs == {}  # the task deletes it all the same


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"HYBRIDMI_POD_UID": ""}, "HYBRIDMI_POD_UID='': the task's pod needs both"),
        ({"HYBRIDMI_KEEP_TRAINJOB": "perhaps"}, "HYBRIDMI_KEEP_TRAINJOB='perhaps' is not a boolean"),
    ],
)
def test_bad_task_env__refuses_before_creating_anything(changes, message, tiny_cfg, dataset_dir, task_env, tmp_path):
    with FakeKubeAPI(Scripted([COMPLETE])) as kube:
        with pytest.raises(ValueError, match=message):
            run_trainjob_task(
                tiny_cfg,
                dataset_dir=dataset_dir,
                model_dir=tmp_path / "model",
                nodes=cpu_nodes(2),
                env={**task_env, **changes},
                api_client=kube.api_client(),
                poll_s=0.01,
            )
        assert not kube.methods("POST")


def test_a_trainer_older_than_v2_2__fails_in_one_line_naming_the_fields_it_lacks(
    tiny_cfg, dataset_dir, task_env, task_store, tmp_path
):
    """Trainer v2.1's CRD has no runtimePatches (node selector, tolerations, /dev/shm, pull secret) and no
    activeDeadlineSeconds: without strict validation the API server would drop them and create the TrainJob."""
    with FakeKubeAPI(Scripted([COMPLETE]), crd_file=OLDER_CRD_FILE) as kube:
        with pytest.raises(TrainJobApiError) as refused:
            run_trainjob_task(
                tiny_cfg,
                dataset_dir=dataset_dir,
                model_dir=tmp_path / "model",
                nodes=cpu_nodes(2),
                env=task_env,
                api_client=kube.api_client(),
                poll_s=0.01,
            )
        assert kube.jobs == {}
    message = str(refused.value)
    assert "\n" not in message and refused.value.status == 400
    assert message.startswith("creating TrainJob hybridmi-train-")
    assert (
        'strict decoding error: unknown field "spec.activeDeadlineSeconds", unknown field "spec.runtimePatches"'
        in message
    )
    assert message.endswith(
        "(the cluster's TrainJob CRD has no field spec.activeDeadlineSeconds, spec.runtimePatches: "
        "its Kubeflow Trainer is older than v2.2, which this project needs (k8s/trainer installs v2.2.1))"
    )
