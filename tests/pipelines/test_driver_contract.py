"""The compiled pipelines against the KFP driver's own rules (pipelines/driver_contract.py, backend tag 2.17.0).

Every executor of every pipeline a user can submit — the committed YAML, the α sweep, the multi-node
pipeline, every one-stage rerun, and a build with a pull secret — resolves each platform field with its
default run parameters (and the arguments `hybridmi submit` checks) to something the driver accepts.
The checker itself is shown to catch what the driver refuses, on pipelines built the way that fails.
(No ``from __future__ import annotations`` here: kfp reads the test pipelines' annotations as types.)
"""

from typing import Optional

import pytest
import yaml
from kfp import compiler, dsl, kubernetes

from hybridmi.runners.compile import COMPILED_DIR
from hybridmi.stages import STAGE_NAMES
from pipelines import build_hybridmi_pipeline, rerun_pipeline
from pipelines.driver_contract import BACKEND_TAG, QUANTITY, check_package, check_package_text
from pipelines.settings import Limits

COMMITTED = sorted(COMPILED_DIR.glob("*.yaml"))


def compiled_docs(func, tmp_path) -> list[dict]:
    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(func, str(path))
    return list(yaml.safe_load_all(path.read_text()))


def test_backend_tag__is_the_one_k8s_kfp_installs():
    assert BACKEND_TAG == "2.17.0"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_pipelines__pass_the_driver_with_their_defaults(path):
    assert len(COMMITTED) == 3
    assert check_package_text(path.read_text()) == []


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_rerun_pipelines__pass_the_driver_with_their_defaults(stage, tmp_path):
    docs = compiled_docs(rerun_pipeline(stage), tmp_path)
    uris = {
        name: "minio://mlpipeline/v2/artifacts/x"
        for name in docs[0]["root"]["inputDefinitions"]["parameters"]
        if name.endswith("_uri")
    }
    assert check_package(docs, uris) == []


def test_pull_secret__absent_by_default_and_a_named_one_is_a_constant_the_driver_takes(tmp_path):
    default_docs = [yaml.safe_load_all(p.read_text()) for p in COMMITTED]
    for spec, platform in default_docs:
        assert "image_pull_secret" not in spec["root"]["inputDefinitions"]["parameters"]
        assert not any(
            "imagePullSecret" in e for e in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
        )
    docs = compiled_docs(build_hybridmi_pipeline(Limits(image_pull_secret="regcred")), tmp_path)
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {label: e.get("imagePullSecret") for label, e in executors.items()} == {
        label: [{"secretName": "regcred", "secretNameParameter": {"runtimeValue": {"constant": "regcred"}}}]
        for label in docs[0]["deploymentSpec"]["executors"]
    }
    assert check_package(docs) == []


def test_checker__refuses_an_empty_pull_secret_parameter_as_the_driver_does(tmp_path):
    """A pull secret taken from a run parameter whose default is "" fails every task's driver."""

    @dsl.component(base_image="python:3.11")
    def step():
        pass

    @dsl.pipeline(name="pull-secret-parameter")
    def pipeline(image_pull_secret: str = ""):
        kubernetes.set_image_pull_secrets(step(), [image_pull_secret])

    docs = compiled_docs(pipeline, tmp_path)
    (refusal,) = check_package(docs)
    assert (refusal.task, refusal.field) == ("step", "imagePullSecret[0]")
    assert "Expected a non-empty string" in refusal.reason
    assert "driver/resolve.go resolveInputParameterStr" in str(refusal) and "@ 2.17.0" in str(refusal)
    assert check_package(docs, {"image_pull_secret": "regcred"}) == []


def test_checker__an_optional_parameter_left_null_is_skipped_as_the_driver_skips_it(tmp_path):
    @dsl.component(base_image="python:3.11")
    def step():
        pass

    @dsl.pipeline(name="optional-secret")
    def pipeline(secret: Optional[str] = None):  # kfp: an optional parameter without a default
        kubernetes.use_secret_as_env(step(), secret_name=secret, secret_key_to_env={"k": "K"})

    docs = compiled_docs(pipeline, tmp_path)
    declared = docs[0]["root"]["inputDefinitions"]["parameters"]["secret"]
    assert declared.get("isOptional") and "defaultValue" not in declared  # argo.go fills it with null
    assert check_package(docs) == []
    assert [r.field for r in check_package(docs, {"secret": ""})] == ["secretAsEnv[0]"]


@pytest.mark.parametrize(
    "arguments, field, reason",
    [
        ({"store_secret": ""}, "secretAsEnv[0]", "Expected a non-empty string"),
        ({"task_cpu_request": ""}, "resourceCpuRequest", "ParseQuantity('')"),
        ({"task_memory_limit": "32GB"}, "resourceMemoryLimit", "ParseQuantity('32GB')"),
        ({"gpu_count": "one"}, "accelerator.resourceCount", "ParseQuantity('one')"),
        ({"image": ""}, "image", "empty image"),
        ({"gpu_node_selector": ["pool"]}, "nodeSelector", "does not unmarshal into map[string]string"),
        ({"gpu_node_selector": {"pool": 1}}, "nodeSelector", "does not unmarshal into map[string]string"),
        ({"gpu_tolerations": "nvidia.com/gpu"}, "tolerations[0]", "must be either struct or list type"),
    ],
)
def test_checker__refuses_values_the_driver_refuses_on_the_stage_that_reads_them(arguments, field, reason):
    refusals = check_package_text((COMPILED_DIR / "hybridmi.yaml").read_text(), arguments)
    assert refusals and all(r.field == field and reason in r.reason for r in refusals), refusals
    assert {r.task for r in refusals} >= ({"train", "ddim"} if field != "image" else {"prepare", "report"})


@pytest.mark.parametrize(
    "arguments", [{"gpu_count": ""}, {"gpu_type": ""}, {"gpu_node_selector": {}}, {"gpu_tolerations": []}]
)
def test_checker__empty_accelerator_or_scheduling_values_add_nothing_and_pass(arguments):
    assert check_package_text((COMPILED_DIR / "hybridmi.yaml").read_text(), arguments) == []


def test_checker__walks_the_sweep_loop_with_its_own_inputs():
    refusals = check_package_text((COMPILED_DIR / "alpha_sweep.yaml").read_text(), {"store_secret": ""})
    assert {r.task for r in refusals} == {
        "prepare",
        "for-loop-1/hybridmi-alpha-point/train",
        "for-loop-1/hybridmi-alpha-point/probe",
        "for-loop-1/hybridmi-alpha-point/reconstruction",
    }


@pytest.mark.parametrize(
    "text, valid",
    [
        ("1", True),
        ("500m", True),
        ("1.5Gi", True),
        ("8Gi", True),
        ("1e3", True),
        (".5", True),
        ("+2", True),
        ("100k", True),
        ("", False),
        ("Gi", False),
        ("1K", False),
        ("1GB", False),
        ("1.5.5", False),
        ("one", False),
        (" 1", False),
    ],
)
def test_quantity__follows_kubernetes_parse_quantity(text, valid):
    assert bool(QUANTITY.fullmatch(text)) is valid
