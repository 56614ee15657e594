"""Compile checks: the committed YAML matches the code (SDK drift), every component compiles, the DAG and settings."""
from __future__ import annotations

import difflib
import inspect

import pytest
import yaml
from kfp import compiler

from components import PROJECT_IMAGE, STAGE_COMPONENTS, configure, tradeoff
from hybridmi.orchestrate.compile import COMPILED_DIR, REGENERATE, compile_pipelines
from hybridmi.orchestrate.dag import wiring
from hybridmi.orchestrate.parameters import CONFIG_PARAMETERS, PARAMETERS, TASK_PARAMETERS
from hybridmi.stages import STAGE_NAMES, stage_module
from pipelines import COMPILED, alpha_sweep, hybridmi_pipeline, rerun_pipeline
from pipelines.rerun import GPU_STAGES

GPU_TASKS = {"train", "latents", "ddim", "fid"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    return {path.name: path for path in compile_pipelines(out)}


@pytest.fixture(scope="module")
def main_spec(compiled):
    docs = list(yaml.safe_load_all(compiled["hybridmi.yaml"].read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def test_compiled_yaml__matches_the_committed_files(compiled):
    for name, path in compiled.items():
        committed = COMPILED_DIR / name
        assert committed.is_file(), f"{committed} is missing; regenerate with: {REGENERATE}"
        fresh, old = path.read_text(), committed.read_text()
        if fresh != old:
            diff = "".join(list(difflib.unified_diff(old.splitlines(True), fresh.splitlines(True), str(committed), "fresh"))[:40])
            pytest.fail(f"{committed} is out of date with the code or the kfp SDK; regenerate with: {REGENERATE}\n{diff}")


@pytest.mark.parametrize("name", [*STAGE_COMPONENTS, "configure", "tradeoff"])
def test_component__compiles_on_the_project_image_without_installing_kfp(name, tmp_path):
    component = STAGE_COMPONENTS.get(name) or {"configure": configure, "tradeoff": tradeoff}[name]
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(component, str(path))
    spec = yaml.safe_load(path.read_text())
    (executor,) = spec["deploymentSpec"]["executors"].values()
    container = executor["container"]
    assert container["image"] == PROJECT_IMAGE
    assert "pip install" not in " ".join(container["command"])


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_stage_component__artifacts_are_named_after_the_stage_contract(stage):
    spec = STAGE_COMPONENTS[stage].component_spec
    artifact_inputs = {k for k, v in spec.inputs.items() if v.type.startswith("system.")}
    module = stage_module(stage)
    assert artifact_inputs == set(module.INPUTS)
    assert set(module.OUTPUTS) <= set(spec.outputs)


def test_pipeline_parameters__are_the_documented_ones_with_their_defaults(main_spec):
    params = main_spec[0]["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(PARAMETERS)
    for name, parameter in PARAMETERS.items():
        assert params[name]["defaultValue"] == parameter.default, name
    sweep = inspect.signature(alpha_sweep.pipeline_func).parameters
    assert set(sweep) - {"alphas"} <= set(PARAMETERS)


def test_pipeline_dag__wires_the_same_edges_as_the_stage_declarations(main_spec):
    tasks = main_spec[0]["root"]["dag"]["tasks"]
    for stage, edges in wiring().items():
        artifacts = tasks[stage]["inputs"].get("artifacts", {})
        got = {name: (a["taskOutputArtifact"]["producerTask"], a["taskOutputArtifact"]["outputArtifactKey"])
               for name, a in artifacts.items()}
        assert got == edges, stage
        assert tasks[stage]["inputs"]["parameters"]["config"]["taskOutputParameter"]["producerTask"] == "configure"


def test_pipeline_settings__gpu_only_on_gpu_stages_and_the_secret_everywhere(main_spec):
    pipeline, platform = main_spec
    executors = pipeline["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = pipeline["root"]["dag"]["tasks"]
    for stage in STAGE_NAMES:
        label = pipeline["components"][tasks[stage]["componentRef"]["name"]]["executorLabel"]
        resources = executors[label]["container"]["resources"]
        assert ("accelerator" in resources) == (stage in GPU_TASKS), stage
        assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"]
        settings = k8s[label]
        assert settings["secretAsEnv"][0]["optional"] is True
        assert ("tolerations" in settings) == ("nodeSelector" in settings) == ("emptyDirMounts" in settings) == (stage in GPU_TASKS)
        if stage in GPU_TASKS:
            assert settings["emptyDirMounts"][0]["mountPath"] == "/dev/shm" and settings["emptyDirMounts"][0]["medium"] == "Memory"
            assert tasks[stage]["retryPolicy"]["maxRetryCount"] == 2
    assert GPU_STAGES == GPU_TASKS


def test_compiled_pipeline__carries_no_credentials(compiled):
    text = "\n".join(p.read_text() for p in compiled.values())
    for needle in ("AWS_SECRET_ACCESS_KEY: ", "secret_key=", "testing-secret"):
        assert needle not in text


def test_rerun_pipeline__imports_each_input_and_runs_one_stage(tmp_path):
    path = tmp_path / "rerun.yaml"
    compiler.Compiler().compile(rerun_pipeline("fid"), str(path))
    spec = yaml.safe_load_all(path.read_text()).__next__()
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(t for t in tasks if not t.startswith("importer")) == ["fid"]
    uris = {p for p in spec["root"]["inputDefinitions"]["parameters"] if p.endswith("_uri")}
    assert uris == {f"{name}_uri" for name in stage_module("fid").INPUTS}
    assert len([t for t in tasks if t.startswith("importer")]) == 4


def test_rerun_pipeline__unknown_stage_is_named():
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        rerun_pipeline("nope")


def test_compiled_files__are_the_pipelines_of_the_package():
    assert set(COMPILED) == {"hybridmi.yaml", "alpha_sweep.yaml"}
    assert COMPILED["hybridmi.yaml"] is hybridmi_pipeline
    assert {p.name for p in TASK_PARAMETERS} & {p.name for p in CONFIG_PARAMETERS} == set()
