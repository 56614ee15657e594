"""The multi-node train task as KFP runs it: the pipeline's own wiring (prepare → train as a TrainJob) under
kfp.local's SubprocessRunner, the task finding the Kubernetes API through a kubeconfig and its namespace,
run id, storage and its pod's name and uid through env as in its pod; the fake cluster runs the TrainJob's
node for real."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import yaml
from fake_kube_api import TASK_POD, FakeKubeAPI

from hybridmi.cluster import NAMESPACE_VAR, POD_NAME_VAR, POD_UID_VAR, RUN_ID_VAR, STORE_SECRET_KEYS
from hybridmi.config import config_to_text
from hybridmi.stages.common import read_sidecar
from hybridmi.task.trainjob.launch import model_key

ROOT = Path(__file__).resolve().parents[3]


def two_step_pipeline():
    """prepare → the multi-node train task, wired by the multi-node pipeline's own functions."""
    from components import prepare
    from pipelines.hybridmi_pipeline import train_step
    from pipelines.parameters import MULTINODE_PARAMETERS, TASK_PARAMETERS, define_pipeline
    from pipelines.settings import Limits, TaskSettings, stage_task

    def wire(p):
        settings = TaskSettings(p, Limits())
        dataset = stage_task(prepare(config=p["config"]), settings).outputs["dataset"]
        train_step(p, settings, dataset, multinode=True)

    return define_pipeline(
        wire, name="prepare-and-train-trainjob", description="test", parameters=TASK_PARAMETERS + MULTINODE_PARAMETERS
    )


def test_component__trains_through_the_trainjob_and_outputs_its_model(
    tiny_cfg, secret, processes, tmp_path, monkeypatch
):
    from kfp import local

    with FakeKubeAPI(processes) as kube:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fake",
                    "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
                    "users": [{"name": "fake", "user": {}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                }
            )
        )
        run_id = "kfp-run-0001"
        for key, var in STORE_SECRET_KEYS.items():  # the storage Secret as the pod's env
            monkeypatch.delenv(var, raising=False)
            if key in secret:
                monkeypatch.setenv(var, secret[key])
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv(NAMESPACE_VAR, "team-a")
        monkeypatch.setenv(RUN_ID_VAR, run_id)
        monkeypatch.setenv(POD_NAME_VAR, TASK_POD[0])
        monkeypatch.setenv(POD_UID_VAR, TASK_POD[1])
        monkeypatch.setenv("PYTHONPATH", str(ROOT))
        local.init(
            runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), raise_on_error=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            two_step_pipeline()(config=config_to_text(tiny_cfg), train_nodes="1", gpu_type="", gpu_count="")
        posted = [r for r in kube.requests if r.method == "POST"]
        left = dict(kube.jobs)
    (run_dir,) = [p for p in (tmp_path / "root").iterdir() if p.is_dir()]
    outputs = json.loads((run_dir / "train-trainjob" / "executor_output.json").read_text())["artifacts"]
    model_dir = Path(outputs["model"]["artifacts"][0]["uri"])
    assert (model_dir / "model.pt").is_file() and read_sidecar(model_dir)["config_hash"] == tiny_cfg.hash()
    assert outputs["metrics"]["artifacts"][0]["metadata"]["steps"] > 0  # logged on the KFP Metrics output
    assert [p.path for p in posted] == ["/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs"]
    assert [(o["name"], o["uid"]) for o in posted[0].body["metadata"]["ownerReferences"]] == [TASK_POD]
    assert left == {}  # deleted once its model was in the store
    from hybridmi.store import store_from_env

    store = store_from_env(secret["store"], {STORE_SECRET_KEYS[k]: v for k, v in secret.items()})
    assert store.exists(model_key(run_id, tiny_cfg))
