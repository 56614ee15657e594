"""Compile the pipelines to KFP IR YAML (what `hybridmi compile` writes, `submit` sends and the golden test checks),
and find a pipeline by name (``PIPELINES``, ``pipeline_for``: what both runners run).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

from hybridmi.errors import UsageError

COMPILED_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "compiled"
REGENERATE = "hybridmi compile --out pipelines/compiled  (or: python -m hybridmi.runners.compile pipelines/compiled)"
IMAGE_PLACEHOLDER = "{{$.inputs.parameters['pipelinechannel--image']}}"  # set_container_image(<the image parameter>)
PIPELINES = ("hybridmi", "alpha_sweep")  # what --pipeline names; reruns (--only) and multi-node are variants


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    return [_sorted(v) for v in value] if isinstance(value, list) else value


def stable_header(text: str) -> str:
    """``text`` with the header comment's object defaults written with sorted keys.

    kfp renders ``# name: list [Default: ...]`` from a protobuf Struct, whose key order changes from
    one process to the next; the spec itself is written sorted. Comments only: KFP reads none of it.
    """
    defaults = next(yaml.safe_load_all(text))["root"].get("inputDefinitions", {}).get("parameters", {})
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        name = line[1:].strip().split(":", 1)[0]
        value = defaults.get(name, {}).get("defaultValue")
        if isinstance(value, (dict, list)) and "[Default: " in line:
            lines[i] = line[: line.index("[Default: ")] + f"[Default: {_sorted(value)}]\n"
    return "".join(lines)


def compile_pipeline(pipeline_func, path: str | Path) -> Path:
    """Compile one pipeline function to ``path`` (byte-identical from one process to the next)."""
    from kfp import compiler

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func, str(path))
    path.write_text(stable_header(path.read_text()))
    return path


def compile_pipelines(out_dir: str | Path, limits=None) -> list[Path]:
    """Write every pipeline of ``pipelines.COMPILED`` (hybridmi.yaml, hybridmi_multinode.yaml, alpha_sweep.yaml)
    into ``out_dir``; with ``limits`` (pipelines/settings.py) other than the defaults, built with those."""
    from pipelines import COMPILED, build_alpha_sweep, build_hybridmi_pipeline
    from pipelines.settings import Limits

    if limits is None or limits == Limits():
        built = COMPILED
    else:
        built = {
            "hybridmi.yaml": build_hybridmi_pipeline(limits),
            "alpha_sweep.yaml": build_alpha_sweep(limits),
            "hybridmi_multinode.yaml": build_hybridmi_pipeline(limits, multinode=True),
        }
    return [compile_pipeline(func, Path(out_dir) / name) for name, func in built.items()]


def pipeline_for(pipeline: str = "hybridmi", only: str | None = None, limits=None, *, train_nodes: int = 1):
    """The pipeline to run or submit: the rerun of stage ``only``, else ``pipeline`` (hybridmi | alpha_sweep), built with ``limits``.

    train_nodes > 1: the hybridmi pipeline whose train step is a Kubeflow Trainer TrainJob (hybridmi-multinode).
    """
    from pipelines import build_alpha_sweep, build_hybridmi_pipeline, rerun_pipeline
    from pipelines.settings import Limits

    limits = Limits() if limits is None else limits
    if train_nodes > 1 and (only or pipeline != "hybridmi"):
        raise UsageError(
            f"train_nodes={train_nodes} trains the hybridmi pipeline on many nodes; "
            f"{'a rerun of ' + only if only else 'the ' + pipeline + ' pipeline'} trains on one node per train task"
        )
    if only:
        return rerun_pipeline(only, limits)
    if pipeline not in PIPELINES:
        raise UsageError(f"pipeline {pipeline!r} is not one of {', '.join(PIPELINES)}")
    if pipeline == "alpha_sweep":
        return build_alpha_sweep(limits)
    return build_hybridmi_pipeline(limits, multinode=train_nodes > 1)


def with_image(spec: dict, image: str) -> dict:
    """The pipeline spec (first document of a package) with ``image`` in every executor that takes the image parameter."""
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container is not None and container["image"] == IMAGE_PLACEHOLDER:
            container["image"] = image
    return spec


def without_retries(spec: dict) -> dict:
    """The pipeline spec with no task retry policy (nested pipelines included).

    pipelines/settings.py gives GPU tasks 2 retries with 30 s / 60 s backoff so that a preempted cluster
    pod resumes from its checkpoint; kfp.local's task executor applies that policy to every failure. On
    this machine nothing is preempted and the artifact store retries its own transient network errors,
    so a failure is final at once. The compiled (cluster) pipeline keeps its retries.
    """
    dags = [spec["root"].get("dag", {}), *(c.get("dag", {}) for c in spec.get("components", {}).values())]
    for dag in dags:
        for task in dag.get("tasks", {}).values():
            task.pop("retryPolicy", None)
    return spec


def local_pipeline(pipeline_func, image: str):
    """``pipeline_func`` compiled and reloaded with ``image`` written into its executors and no task
    retries (``without_retries``): what kfp.local runs."""
    from kfp import components

    with tempfile.TemporaryDirectory(prefix="hybridmi-package-") as tmp:
        package = compile_pipeline(pipeline_func, Path(tmp) / "pipeline.yaml")
        spec = next(yaml.safe_load_all(package.read_text()))
    return components.load_component_from_text(
        yaml.safe_dump(without_retries(with_image(spec, image)), sort_keys=False)
    )


if __name__ == "__main__":
    for written in compile_pipelines(sys.argv[1] if len(sys.argv) > 1 else COMPILED_DIR):
        print(written)
