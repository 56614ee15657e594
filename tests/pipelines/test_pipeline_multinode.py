"""The multi-node pipeline (pipelines/compiled/hybridmi_multinode.yaml): the one-node DAG with its train step
replaced by a task that runs training as a Kubeflow Trainer TrainJob, and how a submission picks it."""

from __future__ import annotations

import pytest
import yaml

from components import train_trainjob
from hybridmi.cluster import NAMESPACE_VAR, POD_NAME_VAR, POD_UID_VAR, RUN_ID_LABEL, RUN_ID_VAR
from hybridmi.parameters import stage_parameters
from hybridmi.runners.arguments import train_nodes
from hybridmi.runners.compile import COMPILED_DIR, pipeline_for
from pipelines import build_hybridmi_pipeline
from pipelines.hybridmi_pipeline import MULTINODE_NAME, TRAINJOB_INPUTS
from pipelines.parameters import check_value, pipeline_arguments
from pipelines.settings import GPU_RETRIES, TRAINJOB_MARGIN_S, TRAINJOB_TASK_CPU, TRAINJOB_TASK_MEMORY, Limits

TASK = "train-trainjob"


def spec_of(name: str) -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all((COMPILED_DIR / name).read_text()))
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def multinode():
    return spec_of("hybridmi_multinode.yaml")


def test_dag__the_one_node_dag_with_the_train_task_replaced_and_its_model_feeding_the_same_consumers(multinode):
    one, _ = spec_of("hybridmi.yaml")
    many, _ = multinode
    one_tasks, many_tasks = one["root"]["dag"]["tasks"], many["root"]["dag"]["tasks"]
    assert set(many_tasks) == set(one_tasks) - {"train"} | {TASK}
    assert many["pipelineInfo"]["name"] == MULTINODE_NAME
    for name, task in one_tasks.items():
        for artifact, source in task["inputs"].get("artifacts", {}).items():
            producer = source["taskOutputArtifact"]["producerTask"]
            got = many_tasks[TASK if name == "train" else name]["inputs"]["artifacts"][artifact]["taskOutputArtifact"]
            assert got == {**source["taskOutputArtifact"], "producerTask": TASK if producer == "train" else producer}
    assert many_tasks[TASK]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]["producerTask"] == "prepare"


def test_task__takes_the_node_shape_from_the_run_parameters_and_the_deadline_from_the_train_timeout(multinode):
    spec, _ = multinode
    params = spec["root"]["dag"]["tasks"][TASK]["inputs"]["parameters"]
    passed = (*TRAINJOB_INPUTS, "resume_from", *(p.name for p in stage_parameters("train")))
    for name in passed:
        assert params[name] == {"componentInputParameter": name}, name
    assert params["deadline_s"]["runtimeValue"]["constant"] == Limits().timeout_s("train")
    assert params["image_pull_secret"]["runtimeValue"]["constant"] == Limits().image_pull_secret == ""  # compile-time
    compile_time = {"config", "dataset", "deadline_s", "image_pull_secret"}
    assert set(train_trainjob.component_spec.inputs) - compile_time == set(passed)
    assert spec["root"]["inputDefinitions"]["parameters"]["train_nodes"]["defaultValue"] == "2"


def test_task__no_gpu_of_its_own_namespace_and_run_id_as_env_outlives_the_trainjob_and_is_retried(multinode, tmp_path):
    spec, platform = multinode
    executor = spec["deploymentSpec"]["executors"][f"exec-{TASK}"]["container"]
    assert "accelerator" not in executor.get("resources", {})
    # A small pod of its own: the task_* parameters size the TrainJob's nodes, not the task that polls it.
    resources = executor["resources"]
    assert (resources["resourceCpuRequest"], resources["resourceCpuLimit"]) == TRAINJOB_TASK_CPU == ("500m", "2")
    assert (
        (resources["resourceMemoryRequest"], resources["resourceMemoryLimit"]) == TRAINJOB_TASK_MEMORY == ("1Gi", "4Gi")
    )
    settings = platform[f"exec-{TASK}"]
    assert {"nodeSelector", "tolerations", "emptyDirMounts"}.isdisjoint(settings)  # the TrainJob's nodes get those
    assert {"name": RUN_ID_VAR, "fieldPath": f"metadata.labels['{RUN_ID_LABEL}']"} in settings["fieldPathAsEnv"]
    assert {"name": NAMESPACE_VAR, "fieldPath": "metadata.namespace"} in settings["fieldPathAsEnv"]
    assert {"name": POD_NAME_VAR, "fieldPath": "metadata.name"} in settings["fieldPathAsEnv"]  # the TrainJob's owner
    assert {"name": POD_UID_VAR, "fieldPath": "metadata.uid"} in settings["fieldPathAsEnv"]
    assert settings["secretAsEnv"][0]["secretNameParameter"] == {"componentInputParameter": "store_secret"}
    assert int(settings["activeDeadlineSeconds"]) == Limits().timeout_s("train") + TRAINJOB_MARGIN_S
    task = spec["root"]["dag"]["tasks"][TASK]
    assert task["retryPolicy"]["maxRetryCount"] == GPU_RETRIES and task["taskInfo"]["name"] == "train (TrainJob)"
    from kfp import compiler

    path = tmp_path / "short.yaml"
    compiler.Compiler().compile(
        build_hybridmi_pipeline(Limits().with_timeouts({"train": 7200}), multinode=True), str(path)
    )
    short = list(yaml.safe_load_all(path.read_text()))
    assert (
        short[0]["root"]["dag"]["tasks"][TASK]["inputs"]["parameters"]["deadline_s"]["runtimeValue"]["constant"] == 7200
    )
    assert (
        int(short[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][f"exec-{TASK}"]["activeDeadlineSeconds"])
        == 7200 + TRAINJOB_MARGIN_S
    )


@pytest.mark.parametrize(
    "given, nodes, pipeline",
    [({}, 1, "hybridmi"), ({"train_nodes": "1"}, 1, "hybridmi"), ({"train_nodes": "4"}, 4, MULTINODE_NAME)],
)
def test_submission__train_nodes_above_1_picks_the_multinode_pipeline(given, nodes, pipeline):
    arguments = pipeline_arguments("", **given)
    assert train_nodes(arguments) == nodes
    assert ("train_nodes" in arguments) == (nodes > 1)  # the one-node pipeline has no such parameter
    assert pipeline_for("hybridmi", train_nodes=nodes).name == pipeline


def test_submission__train_nodes_is_checked_and_refused_where_nothing_trains_on_many_nodes():
    with pytest.raises(ValueError, match="train_nodes='0' is not a positive integer"):
        check_value("train_nodes", "0")
    with pytest.raises(ValueError, match="train_nodes=2 trains the hybridmi pipeline on many nodes; the alpha_sweep"):
        pipeline_for("alpha_sweep", train_nodes=2)
    with pytest.raises(ValueError, match="a rerun of train trains on one node"):
        pipeline_for("hybridmi", "train", train_nodes=2)


def test_local_run__refuses_train_nodes_above_1_before_running_anything(tmp_path):
    from hybridmi.runners.local import run_local

    with pytest.raises(
        ValueError, match="train_nodes=3 makes the train step a Kubeflow Trainer TrainJob.*hybridmi submit"
    ):
        run_local(None, ["train.epochs=1"], runner="inprocess", pipeline_root=tmp_path, parameters={"train_nodes": "3"})
    assert list(tmp_path.iterdir()) == []


def test_component__compiles_on_the_project_image_without_installing_kfp(tmp_path):
    from kfp import compiler

    from components import DEFAULT_IMAGE

    path = tmp_path / "train_trainjob.yaml"
    compiler.Compiler().compile(train_trainjob, str(path))
    (executor,) = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == DEFAULT_IMAGE
    assert "pip install" not in " ".join(executor["container"]["command"])


def test_task__loads_the_library_only():
    """The task pod imports the launcher: neither pipelines, components nor kfp (a pod runs the library, not the
    definitions that compile the pipelines)."""
    import os
    import subprocess
    import sys

    root = COMPILED_DIR.parents[1]
    code = (
        "import sys, hybridmi.task.trainjob.launch; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pipelines', 'components', 'kfp'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
