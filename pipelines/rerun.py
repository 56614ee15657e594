"""Rerun one stage against existing artifacts: a one-step pipeline whose inputs are ``dsl.importer`` tasks.

``rerun_pipeline("probe")`` has parameters ``config`` (resolved config text), ``<input>_uri`` for each
of the stage's inputs (``dataset_uri``, ``model_uri``; any URI the runner can read: a local path
under kfp.local, ``minio://`` / ``s3://`` on a cluster) and the task parameters.
"""
from __future__ import annotations

import inspect
import typing

from kfp import dsl
from kfp.dsl.types.type_annotations import InputAnnotation

from components import STAGE_COMPONENTS
from hybridmi.orchestrate.parameters import TASK_PARAMETERS
from pipelines.settings import Cluster, stage_task

GPU_STAGES = frozenset({"train", "latents", "ddim", "fid"})


def input_artifact_types(stage: str) -> dict[str, type]:
    """The component's artifact inputs, name -> artifact class (Dataset, Model, Metrics...), in signature order."""
    if stage not in STAGE_COMPONENTS:
        raise ValueError(f"unknown stage {stage!r}; stages are: {', '.join(STAGE_COMPONENTS)}")
    hints = typing.get_type_hints(STAGE_COMPONENTS[stage].python_func, include_extras=True)
    types = {}
    for name, hint in hints.items():
        args = typing.get_args(hint)
        if args and InputAnnotation in args[1:]:
            types[name] = args[0]
    return types


def rerun_pipeline(stage: str):
    """A compiled-ready pipeline function that imports the stage's inputs by URI and runs the stage once."""
    artifact_types = input_artifact_types(stage)
    component = STAGE_COMPONENTS[stage]

    def body(*args):
        kwargs = dict(zip((p.name for p in params), args))  # kfp calls a pipeline function positionally
        cluster = Cluster(gpu_type=kwargs["gpu_type"], gpu_count=kwargs["gpu_count"], cpu_request=kwargs["task_cpu_request"],
                          memory_request=kwargs["task_memory_request"], store_secret=kwargs["store_secret"])
        imported = {
            name: dsl.importer(artifact_uri=kwargs[f"{name}_uri"], artifact_class=cls, reimport=False).output
            for name, cls in artifact_types.items()
        }
        stage_task(component(config=kwargs["config"], **imported), cluster, gpu=stage in GPU_STAGES)

    params = [inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)]
    params += [inspect.Parameter(f"{name}_uri", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str) for name in artifact_types]
    params += [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str, default=p.default)
               for p in TASK_PARAMETERS if p.name != "config"]
    body.__signature__ = inspect.Signature(params)
    body.__annotations__ = {p.name: str for p in params}
    body.__name__ = body.__qualname__ = f"rerun_{stage}"
    return dsl.pipeline(name=f"hybridmi-rerun-{stage}", description=f"Rerun stage {stage} on imported artifacts.")(body)
