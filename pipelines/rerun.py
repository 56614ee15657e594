"""Rerun one stage against existing artifacts: a one-step pipeline whose inputs are ``dsl.importer`` tasks."""

from __future__ import annotations

import inspect
import re
import typing
from urllib.parse import urlsplit

from kfp import dsl
from kfp.dsl.types.type_annotations import InputAnnotation

from components import STAGE_COMPONENTS
from hybridmi.errors import UsageError
from hybridmi.parameters import Parameter, stage_parameters
from pipelines.parameters import TASK_PARAMETERS, define_pipeline, stage_values
from pipelines.settings import Limits, TaskSettings, stage_task

# The schemes the KFP launcher opens (backend src/v2/objectstore): its own store is minio://.
RERUN_SCHEMES = ("minio", "s3", "gs")
# KFP's default pipeline root (the kfp-launcher ConfigMap's defaultPipelineRoot when none is set).
DEFAULT_PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


def input_artifact_types(stage: str) -> dict[str, type]:
    """The component's artifact inputs, name -> artifact class (Dataset, Model, Metrics...), in signature order."""
    if stage not in STAGE_COMPONENTS:
        raise UsageError(f"unknown stage {stage!r}; stages are: {', '.join(STAGE_COMPONENTS)}")
    hints = typing.get_type_hints(STAGE_COMPONENTS[stage].python_func, include_extras=True)
    types = {}
    for name, hint in hints.items():
        args = typing.get_args(hint)
        if args and InputAnnotation in args[1:]:
            types[name] = args[0]
    return types


def check_artifact_uri(name: str, uri: str, pipeline_root: str | None = None) -> str:
    """``uri`` when the KFP launcher can import it: scheme minio|s3|gs, a key, in the bucket of ``pipeline_root``
    (default ``DEFAULT_PIPELINE_ROOT``); ValueError naming what is wrong."""
    parts = urlsplit(uri)
    where = f"--from {name}={uri}"
    if parts.scheme not in RERUN_SCHEMES:
        raise UsageError(
            f"{where}: scheme {parts.scheme or '(none)'!r} is not one of {', '.join(f'{s}://' for s in RERUN_SCHEMES)} "
            "(copy the URI the KFP UI shows for the artifact, e.g. minio://mlpipeline/v2/artifacts/...)"
        )
    if not _BUCKET.fullmatch(parts.netloc):
        raise UsageError(
            f"{where}: {parts.netloc!r} is not a bucket name (3-63 lower-case letters, digits, '.', '-', '_')"
        )
    if not parts.path.strip("/") or parts.query or parts.fragment or any(c.isspace() for c in uri):
        raise UsageError(
            f"{where}: no object key after the bucket (use {parts.scheme}://{parts.netloc}/path/to/artifact)"
        )
    root = urlsplit(pipeline_root or DEFAULT_PIPELINE_ROOT)
    if (parts.scheme, parts.netloc) != (root.scheme, root.netloc):
        raise UsageError(
            f"{where}: the KFP launcher reads imported artifacts only from the pipeline root's bucket "
            f"{root.scheme}://{root.netloc} (another bucket is opened without its endpoint); copy the artifact "
            "there, or submit with --pipeline-root naming a root in its bucket"
        )
    return uri


def rerun_pipeline(stage: str, limits: Limits = Limits()):
    """A compile-ready pipeline that imports the stage's inputs by URI and runs the stage once, caching off."""
    artifact_types = input_artifact_types(stage)
    component = STAGE_COMPONENTS[stage]
    uris = [Parameter(f"{name}_uri", "", f"URI of the {name} artifact to import") for name in artifact_types]

    def wire(p: dict) -> None:
        settings = TaskSettings(p, limits)
        imported = {}
        for name, cls in artifact_types.items():
            importer = dsl.importer(artifact_uri=p[f"{name}_uri"], artifact_class=cls, reimport=False)
            importer.set_display_name(f"import {name}").set_caching_options(False)
            imported[name] = importer.output
        extra = (
            {"resume_from": p["resume_from"]}
            if "resume_from" in inspect.signature(component.python_func).parameters
            else {}
        )
        task = stage_task(component(config=p["config"], **imported, **extra, **stage_values(p, stage)), settings)
        task.set_display_name(f"rerun {stage}").set_caching_options(False)

    return define_pipeline(
        wire,
        name=f"hybridmi-rerun-{stage}",
        description=f"Rerun stage {stage} on imported artifacts.",
        parameters=(*TASK_PARAMETERS, *stage_parameters(stage), *uris),
        required=[u.name for u in uris],
        defaults={"image": limits.default_image},
    )
