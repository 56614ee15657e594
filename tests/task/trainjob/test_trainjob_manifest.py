"""The rendered TrainJob against Kubeflow Trainer's own CRD and runtime (vendored at TRAINER_VERSION), and
against the train stage's command line: what every node runs must parse as ``hybridmi stage train``."""

from __future__ import annotations

import pytest
from crd_schema import SOURCE, runtime, validate_trainjob

from hybridmi.cli import build_parser
from hybridmi.cluster import GPU_TOLERATION, STORE_SECRET_KEYS, TRAINER_RUNTIME, TRAINER_VERSION
from hybridmi.config import config_from_text, config_to_text
from hybridmi.task.trainjob.manifest import (
    CONFIG_TEXT_VAR,
    GROUP,
    KIND,
    MAX_NAME,
    NODE,
    VERSION,
    NodeSettings,
    TrainJobRequest,
    render_trainjob,
    trainjob_name,
)

IMAGE = "registry.example.com/ml/hybridmi:0.1.0-abcdef012345"
DATASET = "s3://mlpipeline/hybridmi/datasets/" + "ab" * 32
MODEL = "s3://mlpipeline/hybridmi/runs/0b9c-run/c0ffee/train/model"
# torchrun's variables, which the Trainer's torch plugin refuses in trainer.env (constants.TorchRunReservedEnvNames).
TORCHRUN_RESERVED = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}


def request(**changes) -> TrainJobRequest:
    """The request of a 4-node x 8-GPU run; ``changes`` of NodeSettings fields go to its node settings."""
    from hybridmi.config import load_config

    cfg = load_config(None, ["train.epochs=2"])
    node_fields = set(NodeSettings.__dataclass_fields__)
    settings = {"image": IMAGE, "nodes": 4, "gpu_count": "8", "deadline_s": 86400}
    settings.update({k: v for k, v in changes.items() if k in node_fields})
    values = dict(
        name=trainjob_name("0b9c-run", cfg.hash()),
        namespace="team-a",
        config_text=config_to_text(cfg),
        config_hash=cfg.hash(),
        run_id="0b9c-run",
        dataset_uri=DATASET,
        model_uri=MODEL,
    )
    values.update({k: v for k, v in changes.items() if k not in node_fields})
    return TrainJobRequest(settings=NodeSettings(**settings), **values)


POD = ("hybridmi-multinode-x7k2p-system-container-impl-2417", "0d2c8a4e-1f3b-4e5d-8c7a-9b6f5e4d3c2b")
SHAPES = {
    "4 nodes x 8 GPUs, selector, toleration, pull secret, resume, owner": dict(
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        tolerations=[GPU_TOLERATION],
        image_pull_secret="regcred",
        resume_from="earlier-run",
        owner_pod=POD,
    ),
    "2 CPU nodes": dict(nodes=2, gpu_type=""),
    "1 node, defaults": dict(nodes=1, gpu_count="1"),
}


@pytest.mark.parametrize("changes", SHAPES.values(), ids=SHAPES.keys())
def test_render__is_a_valid_trainjob_of_the_pinned_trainer_crd(changes):
    obj = render_trainjob(request(**changes))
    assert validate_trainjob(obj) == []
    assert obj["apiVersion"] == f"{GROUP}/{VERSION}" and obj["kind"] == KIND


def test_validator__refuses_typos_wrong_types_bad_quantities_and_duplicate_env():
    obj = render_trainjob(request())
    obj["spec"]["trainer"]["numNode"] = 2
    obj["spec"]["trainer"]["numProcPerNode"] = "eight"
    obj["spec"]["trainer"]["resourcesPerNode"]["limits"]["memory"] = "lots"
    obj["spec"]["trainer"]["env"].append({"name": CONFIG_TEXT_VAR, "value": "again"})
    obj["metadata"]["name"] = "Hybridmi_Train"
    problems = "\n".join(validate_trainjob(obj))
    for expected in (
        "'numNode' was unexpected",
        "'eight' is not of type 'integer'",
        "'lots' does not match",
        f"two items with the same name: ['{CONFIG_TEXT_VAR}']",
        "must match RFC 1035",
    ):
        assert expected in problems


def test_vendored_crd_and_runtime__are_the_pinned_trainer_release_and_name_what_the_rendering_targets():
    assert SOURCE["tag"] == TRAINER_VERSION
    rt = runtime()  # sha256-checked against SOURCE.json on load, like the CRD
    assert rt["kind"] == "ClusterTrainingRuntime" and rt["metadata"]["name"] == TRAINER_RUNTIME
    assert "torch" in rt["spec"]["mlPolicy"]
    (job,) = rt["spec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == NODE
    assert [c["name"] for c in job["template"]["spec"]["template"]["spec"]["containers"]] == [NODE]
    patch = render_trainjob(request())["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    assert [j["name"] for j in patch["replicatedJobs"]] == [NODE]  # the Trainer refuses a patch of a job it lacks


def test_command__every_node_runs_torchrun_then_the_train_stage_on_the_object_storage_uris():
    trainer = render_trainjob(request())["spec"]["trainer"]
    assert trainer["command"] == ["torchrun"] and trainer["args"][:2] == ["--module", "hybridmi.cli"]
    args = build_parser().parse_args(trainer["args"][2:])  # what `python -m hybridmi.cli` receives
    assert (args.command, args.name, args.config_env) == ("stage", "train", CONFIG_TEXT_VAR)
    assert args.inputs == [f"dataset={DATASET}"] and args.outputs == [f"model={MODEL}"]
    assert trainer["image"] == IMAGE


def test_env__the_same_config_the_run_id_and_the_storage_secret_by_reference_only():
    req = request(resume_from="earlier-run")
    env = {e["name"]: e for e in render_trainjob(req)["spec"]["trainer"]["env"]}
    assert config_from_text(env[CONFIG_TEXT_VAR]["value"]).hash() == req.config_hash
    assert env["HYBRIDMI_RUN_ID"]["value"] == "0b9c-run" and env["HYBRIDMI_RESUME_FROM"]["value"] == "earlier-run"
    for key, var in STORE_SECRET_KEYS.items():
        assert env[var] == {
            "name": var,
            "valueFrom": {"secretKeyRef": {"name": "hybridmi-store", "key": key, "optional": True}},
        }
    assert not TORCHRUN_RESERVED & set(env)


def test_nodes__gpus_set_processes_per_node_and_the_gpu_limit_cpu_nodes_run_one_process():
    gpu = render_trainjob(request(nodes=4, gpu_count="8"))["spec"]["trainer"]
    assert (gpu["numNodes"], gpu["numProcPerNode"], gpu["resourcesPerNode"]["limits"]["nvidia.com/gpu"]) == (4, 8, "8")
    cpu = render_trainjob(request(nodes=2, gpu_count=""))["spec"]["trainer"]
    assert (cpu["numNodes"], cpu["numProcPerNode"]) == (2, 1)
    assert set(cpu["resourcesPerNode"]["limits"]) == {"cpu", "memory"}
    assert render_trainjob(request())["spec"]["activeDeadlineSeconds"] == 86400


def test_scheduling__selector_tolerations_pull_secret_and_shm_reach_the_node_pods():
    spec = render_trainjob(request(**SHAPES["4 nodes x 8 GPUs, selector, toleration, pull secret, resume, owner"]))
    pod = spec["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod = pod["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["tolerations"] == [GPU_TOLERATION] and pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["containers"] == [{"name": NODE, "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}]
    plain = render_trainjob(request())["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    assert set(plain["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]) == {"volumes", "containers"}


def test_owner__the_task_pod_owns_the_trainjob_without_blocking_its_deletion():
    meta = render_trainjob(request(owner_pod=POD))["metadata"]
    assert meta["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": POD[0], "uid": POD[1], "blockOwnerDeletion": False}
    ]  # true would need update on pods/finalizers
    assert "ownerReferences" not in render_trainjob(request())["metadata"]


def test_name__one_per_run_and_config_a_dns_label_short_enough_for_the_pod_hostnames():
    names = {trainjob_name(run, cfg) for run in ("run-a", "run-b") for cfg in ("c1", "c2")}
    assert len(names) == 4 and trainjob_name("run-a", "c1") == trainjob_name("run-a", "c1")
    assert all(
        len(n) <= MAX_NAME and validate_trainjob({**render_trainjob(request()), "metadata": {"name": n}}) == []
        for n in names
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(nodes=0), "nodes=0 is not a positive integer"),
        (dict(nodes="two"), "train_nodes='two' is not a positive integer"),
        (dict(gpu_count="-1"), "gpu_count='-1' is not a positive integer"),
        (dict(deadline_s=0), "deadline_s=0 is not a positive integer"),
        (dict(model_uri="/local/model"), "model_uri='/local/model' is not an s3:// URI"),
        (dict(name="x" * 60), "at most 50 characters"),
        (dict(image=""), "image is empty"),
        (dict(owner_pod=("pod-1", "")), r"owner_pod=\('pod-1', ''\) is not a \(pod name, pod uid\) pair"),
    ],
)
def test_request__refuses_what_the_cluster_could_not_run(changes, message):
    with pytest.raises(ValueError, match=message):
        request(**changes)
