"""Compile checks on the IR: the committed YAML matches the code, and every cluster setting is where the backend reads it.

What the KFP 2.17 backend does with these fields was read in its source (backend/src/v2/driver):
an executor image ``{{$.inputs.parameters['pipelinechannel--X']}}`` is resolved per run from the task's
inputs; ``nodeSelectorJson`` / ``tolerationJson`` resolve a parameter and an empty ``{}`` / ``[]`` adds
nothing; ``activeDeadlineSeconds`` becomes the pod's; ``fieldPathAsEnv`` becomes a downward-API env var.
"""

from __future__ import annotations

import difflib
import re

import pytest
import yaml
from kfp import compiler

from components import DEFAULT_IMAGE, STAGE_COMPONENTS, tradeoff
from hybridmi.cluster import GPU_TOLERATION, RUN_ID_LABEL, RUN_ID_VAR
from hybridmi.parameters import CONFIG_PARAMETERS
from hybridmi.runners.compile import COMPILED_DIR, IMAGE_PLACEHOLDER, REGENERATE, compile_pipelines
from hybridmi.stages import STAGE_NAMES, stage_module
from hybridmi.task.dag import wiring
from pipelines import COMPILED, build_alpha_sweep, build_hybridmi_pipeline, hybridmi_pipeline, rerun_pipeline
from pipelines.parameters import MULTINODE_PARAMETERS, PARAMETERS, PIPELINE_PARAMETERS, TASK_PARAMETERS
from pipelines.settings import DEFAULT_TIMEOUTS_S, GPU_RETRIES, GPU_STAGES, Limits

GPU_TASKS = {"train", "latents", "ddim", "sample", "fid"}


def load(path) -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def compiled_spec(func, tmp_path, name="p.yaml") -> tuple[dict, dict]:
    path = tmp_path / name
    compiler.Compiler().compile(func, str(path))
    return load(path)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    return {path.name: path for path in compile_pipelines(out)}


@pytest.fixture(scope="module")
def main_spec(compiled):
    return load(compiled["hybridmi.yaml"])


@pytest.fixture(scope="module")
def sweep_spec(compiled):
    return load(compiled["alpha_sweep.yaml"])


def executor_of(spec: dict, task: dict) -> str:
    return spec["components"][task["componentRef"]["name"]]["executorLabel"]


def stage_executors(spec: dict) -> dict[str, str]:
    """Stage name -> executor label, across nested pipelines (executor labels are exec-<component>[-N])."""
    return {
        label: label.removeprefix("exec-").rsplit("-", 1)[0] if label[-1].isdigit() else label.removeprefix("exec-")
        for label in spec["deploymentSpec"]["executors"]
    }


def test_compiled_yaml__matches_the_committed_files(compiled):
    for name, path in compiled.items():
        committed = COMPILED_DIR / name
        assert committed.is_file(), f"{committed} is missing; regenerate with: {REGENERATE}"
        fresh, old = path.read_text(), committed.read_text()
        if fresh != old:
            diff = "".join(
                list(difflib.unified_diff(old.splitlines(True), fresh.splitlines(True), str(committed), "fresh"))[:40]
            )
            pytest.fail(
                f"{committed} is out of date with the components, the pipelines, the package version (its "
                f"default image, components/image.py) or the kfp SDK; regenerate with: {REGENERATE}\n{diff}"
            )


@pytest.mark.parametrize("name", [*STAGE_COMPONENTS, "tradeoff"])
def test_component__compiles_on_the_project_image_without_installing_kfp(name, tmp_path):
    component = STAGE_COMPONENTS.get(name, tradeoff)
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(component, str(path))
    spec = yaml.safe_load(path.read_text())
    (executor,) = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == DEFAULT_IMAGE
    assert "pip install" not in " ".join(executor["container"]["command"])


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_stage_component__artifacts_are_named_after_the_stage_contract(stage):
    spec = STAGE_COMPONENTS[stage].component_spec
    artifact_inputs = {k for k, v in spec.inputs.items() if v.type.startswith("system.")}
    module = stage_module(stage)
    assert artifact_inputs == set(module.INPUTS)
    assert set(module.OUTPUTS) <= set(spec.outputs)


def test_report_task__has_a_metrics_output_and_figures_reads_the_ddim_history(main_spec):
    """The KFP UI's run comparison reads Metrics outputs: the report's holds the headline numbers."""
    spec, _ = main_spec
    outputs = spec["components"]["comp-report"]["outputDefinitions"]["artifacts"]
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    ddim = spec["root"]["dag"]["tasks"]["figures"]["inputs"]["artifacts"]["ddim"]["taskOutputArtifact"]
    assert ddim == {"producerTask": "ddim", "outputArtifactKey": "ddim"}


def test_image__every_executor_runs_the_image_parameter_whose_default_is_the_package_version(compiled):
    """The default names the version, not a digest of the sources: an edit outside components/ and pipelines/
    leaves the compiled files as they are. A run sets ``image`` to the reference it pushed."""
    assert re.fullmatch(r"hybridmi:\d+\.\d+\.\d+", DEFAULT_IMAGE)
    for path in [*compiled.values(), *COMPILED_DIR.glob("*.yaml")]:
        spec, platform = load(path)
        assert spec["root"]["inputDefinitions"]["parameters"]["image"]["defaultValue"] == DEFAULT_IMAGE
        for label, executor in spec["deploymentSpec"]["executors"].items():
            if "container" in executor:
                assert executor["container"]["image"] == IMAGE_PLACEHOLDER, (path.name, label)
                assert (
                    "imagePullSecret" not in platform[label]
                )  # only a compile-time secret adds one (test_driver_contract)
        text = path.read_text()
        assert not re.search(r"\b[\w./-]+:(dev|latest)\b", text), f"{path.name} names a mutable tag"


def test_compile_image__writes_that_reference_as_every_pipelines_default(tmp_path, capsys):
    from hybridmi.cli import main

    ref = "registry.example.com/ml/hybridmi:0.1.0-abcdef012345"
    assert main(["compile", "--out", str(tmp_path), "--image", ref]) == 0
    written = sorted(tmp_path.glob("*.yaml"))
    assert [p.name for p in written] == sorted(COMPILED)
    for path in written:
        spec, _ = load(path)
        assert spec["root"]["inputDefinitions"]["parameters"]["image"]["defaultValue"] == ref
        assert f"image: str [Default: '{ref}']" in path.read_text()  # the header comment says the same
    assert main(["compile", "--out", str(tmp_path / "latest"), "--image", "hybridmi:latest"]) == 1
    assert "needs an explicit non-latest tag" in capsys.readouterr().err
    assert not (tmp_path / "latest").exists()


def test_image__each_task_passes_the_image_parameter_for_the_driver_to_resolve(main_spec):
    spec, _ = main_spec
    for name, task in spec["root"]["dag"]["tasks"].items():
        assert task["inputs"]["parameters"]["pipelinechannel--image"] == {"componentInputParameter": "image"}, name


def test_scheduling__gpu_stages_take_selector_and_tolerations_from_json_parameters(main_spec, sweep_spec):
    for spec, platform in (main_spec, sweep_spec):
        params = spec["root"]["inputDefinitions"]["parameters"]
        assert (
            params["gpu_node_selector"]["parameterType"] == "STRUCT"
            and params["gpu_node_selector"]["defaultValue"] == {}
        )
        assert params["gpu_tolerations"]["parameterType"] == "LIST" and params["gpu_tolerations"]["defaultValue"] == [
            GPU_TOLERATION
        ]
        for label, stage in stage_executors(spec).items():
            settings = platform[label]
            gpu = stage in GPU_TASKS
            assert (
                ("nodeSelector" in settings) == ("tolerations" in settings) == ("emptyDirMounts" in settings) == gpu
            ), label
            if gpu:
                assert settings["nodeSelector"] == {
                    "nodeSelectorJson": {"componentInputParameter": "gpu_node_selector"}
                }
                assert settings["tolerations"] == [{"tolerationJson": {"componentInputParameter": "gpu_tolerations"}}]
                assert (
                    "labels" not in settings["nodeSelector"]
                )  # no fixed label: a stock cluster schedules by the GPU request
    assert GPU_STAGES == GPU_TASKS


def test_resources__requests_and_limits_are_parameters_and_gpus_only_on_gpu_stages(main_spec):
    spec, _ = main_spec
    executors = spec["deploymentSpec"]["executors"]
    for label, stage in stage_executors(spec).items():
        resources = executors[label]["container"]["resources"]
        assert ("accelerator" in resources) == (stage in GPU_TASKS), stage
        for field, parameter in (
            ("resourceCpuRequest", "task_cpu_request"),
            ("resourceCpuLimit", "task_cpu_limit"),
            ("resourceMemoryRequest", "task_memory_request"),
            ("resourceMemoryLimit", "task_memory_limit"),
        ):
            assert resources[field] == f"{{{{$.inputs.parameters['pipelinechannel--{parameter}']}}}}", (stage, field)


def test_timeouts__every_executor_has_one_and_limits_change_them(main_spec, tmp_path):
    spec, platform = main_spec
    for label, stage in stage_executors(spec).items():
        assert int(platform[label]["activeDeadlineSeconds"]) == DEFAULT_TIMEOUTS_S[stage]
    _, shorter = compiled_spec(build_hybridmi_pipeline(Limits().with_timeouts({"all": 600, "train": 7200})), tmp_path)
    assert int(shorter["exec-train"]["activeDeadlineSeconds"]) == 7200
    assert int(shorter["exec-probe"]["activeDeadlineSeconds"]) == 600


def test_limits__reject_what_the_ir_cannot_hold():
    with pytest.raises(ValueError, match="unknown stage.*trian"):
        Limits().with_timeouts({"trian": 60})
    with pytest.raises(ValueError, match="timeout of fid must be a positive"):
        Limits().with_timeouts({"fid": 0})
    with pytest.raises(ValueError, match="parallelism must be a positive integer"):
        Limits(sweep_parallelism=0)


def test_run_identity__stage_pods_get_the_kfp_run_id_and_trainers_resume_from(main_spec):
    spec, platform = main_spec
    for label, stage in stage_executors(spec).items():
        env = platform[label].get("fieldPathAsEnv", [])
        assert env == [{"name": RUN_ID_VAR, "fieldPath": f"metadata.labels['{RUN_ID_LABEL}']"}], label
    tasks = spec["root"]["dag"]["tasks"]
    for stage in ("train", "ddim"):
        assert tasks[stage]["inputs"]["parameters"]["resume_from"] == {"componentInputParameter": "resume_from"}


def test_retries__gpu_stages_only(main_spec):
    spec, _ = main_spec
    for name, task in spec["root"]["dag"]["tasks"].items():
        assert ("retryPolicy" in task) == (name in GPU_TASKS), name
        if name in GPU_TASKS:
            assert task["retryPolicy"]["maxRetryCount"] == GPU_RETRIES


def test_alpha_sweep__bounded_parallelism_and_nested_tasks_on_the_image_parameter(sweep_spec, tmp_path):
    spec, _ = sweep_spec
    loop = next(t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t)
    assert loop["iteratorPolicy"]["parallelismLimit"] == Limits().sweep_parallelism
    nested = [c for c in spec["components"].values() if "dag" in c and "train" in c["dag"]["tasks"]]
    assert nested and nested[0]["dag"]["tasks"]["train"]["inputs"]["parameters"]["pipelinechannel--image"] == {
        "componentInputParameter": "image"
    }
    one, _ = compiled_spec(build_alpha_sweep(Limits(sweep_parallelism=1)), tmp_path)
    assert next(t for t in one["root"]["dag"]["tasks"].values() if "parameterIterator" in t)["iteratorPolicy"] == {
        "parallelismLimit": 1
    }


def test_pipeline_parameters__are_the_documented_ones_with_their_defaults(main_spec, sweep_spec, compiled):
    params = main_spec[0]["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {p.name for p in PIPELINE_PARAMETERS}
    multinode = load(compiled["hybridmi_multinode.yaml"])[0]["root"]["inputDefinitions"]["parameters"]
    assert set(multinode) == set(PARAMETERS) == set(params) | {p.name for p in MULTINODE_PARAMETERS}
    for name, parameter in PARAMETERS.items():
        assert multinode[name]["defaultValue"] == parameter.default, name
    sweep = set(sweep_spec[0]["root"]["inputDefinitions"]["parameters"])
    assert {p.name for p in TASK_PARAMETERS} | {
        "alphas",
        "hybrid_epochs",
        "hybrid_time_budget_minutes",
        "hybrid_seed",
    } == sweep
    assert [p.name for p in PIPELINE_PARAMETERS] == [p.name for p in TASK_PARAMETERS + CONFIG_PARAMETERS]


def test_pipeline_dag__wires_the_same_edges_as_the_stage_declarations(main_spec):
    tasks = main_spec[0]["root"]["dag"]["tasks"]
    for stage, edges in wiring().items():
        artifacts = tasks[stage]["inputs"].get("artifacts", {})
        got = {
            name: (a["taskOutputArtifact"]["producerTask"], a["taskOutputArtifact"]["outputArtifactKey"])
            for name, a in artifacts.items()
        }
        assert got == edges, stage
        assert tasks[stage]["inputs"]["parameters"]["config"] == {"componentInputParameter": "config"}
        for parameter in CONFIG_PARAMETERS:  # each config parameter reaches only the task of its stage
            bound = tasks[stage]["inputs"]["parameters"].get(parameter.name)
            assert (bound == {"componentInputParameter": parameter.name}) == (parameter.stage == stage), parameter


def test_secret__every_stage_reads_the_store_secret_optionally(main_spec):
    spec, platform = main_spec
    for label, stage in stage_executors(spec).items():
        assert platform[label]["secretAsEnv"][0]["optional"] is True
        assert platform[label]["secretAsEnv"][0]["secretNameParameter"] == {"componentInputParameter": "store_secret"}


def test_compiled_pipeline__carries_no_credentials(compiled):
    text = "\n".join(p.read_text() for p in compiled.values())
    for needle in ("AWS_SECRET_ACCESS_KEY: ", "secret_key=", "testing-secret", "minio123"):
        assert needle not in text


def test_rerun_pipeline__imports_each_input_runs_one_stage_and_never_caches(tmp_path):
    spec, platform = compiled_spec(rerun_pipeline("fid"), tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(t for t in tasks if not t.startswith("importer")) == ["fid"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    uris = {p for p in params if p.endswith("_uri")}
    assert uris == {f"{name}_uri" for name in stage_module("fid").INPUTS}
    assert all(not params[u].get("isOptional") for u in uris)  # required: a rerun without its inputs is refused
    importers = [t for t in tasks if t.startswith("importer")]
    assert len(importers) == len(stage_module("fid").INPUTS) == 3  # samples, dataset, model
    for name, task in tasks.items():
        assert task.get("cachingOptions", {}).get("enableCache") is not True, name
    assert tasks["fid"]["taskInfo"]["name"] == "rerun fid"
    assert sorted(tasks[t]["taskInfo"]["name"] for t in importers) == sorted(
        f"import {n}" for n in stage_module("fid").INPUTS
    )
    assert spec["deploymentSpec"]["executors"]["exec-fid"]["container"]["image"] == IMAGE_PLACEHOLDER
    assert "activeDeadlineSeconds" in platform["exec-fid"]


def test_rerun_pipeline__a_trainer_rerun_takes_resume_from(tmp_path):
    spec, _ = compiled_spec(rerun_pipeline("train"), tmp_path)
    assert spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["resume_from"] == {
        "componentInputParameter": "resume_from"
    }


def test_rerun_pipeline__unknown_stage_is_named():
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        rerun_pipeline("nope")


def test_compiled_files__are_the_pipelines_of_the_package():
    assert set(COMPILED) == {"hybridmi.yaml", "hybridmi_multinode.yaml", "alpha_sweep.yaml"}
    assert COMPILED["hybridmi.yaml"] is hybridmi_pipeline
    assert {p.name for p in TASK_PARAMETERS} & {p.name for p in CONFIG_PARAMETERS} == set()
