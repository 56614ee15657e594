"""The pipelines' run parameters, documented once: defaults, meaning, checks, and the functions that declare them."""

from __future__ import annotations

import inspect
import json
import re
from typing import Any, Callable, Mapping, Sequence

from kfp import dsl

from components.image import DEFAULT_IMAGE
from hybridmi.cluster import GPU_TOLERATION, OBJECT_NAME, RUN_ID_PATTERN, STORE_SECRET_NAME
from hybridmi.errors import UsageError
from hybridmi.parameters import CONFIG_PARAMETERS, Parameter, stage_parameters

TASK_PARAMETERS = (
    Parameter("config", "", "YAML text of the resolved config (hybridmi config); empty = defaults; never credentials"),
    Parameter(
        "image",
        DEFAULT_IMAGE,
        "container image of every task: set it to the reference you pushed "
        "(`docker/build.sh --push REGISTRY/NAME` prints it); the default names the package version, not a build",
    ),
    Parameter(
        "gpu_type",
        "nvidia.com/gpu",
        "accelerator resource of the GPU stages (train, latents, ddim, sample, fid); empty: no GPU request",
    ),
    Parameter(
        "gpu_count",
        "1",
        "GPUs per GPU stage (train runs one DDP rank per GPU); empty: no GPU request (GPU-less clusters, CI)",
    ),
    Parameter(
        "gpu_node_selector",
        {},
        "node labels the GPU stages require, a JSON object; `{}`: none (the GPU request alone picks GPU nodes)",
    ),
    Parameter(
        "gpu_tolerations",
        [GPU_TOLERATION],
        "tolerations of the GPU stages, a JSON list; default: the `nvidia.com/gpu` taint; `[]`: none",
    ),
    Parameter("task_cpu_request", "1", "CPU request of every stage pod (Kubernetes quantity)"),
    Parameter("task_cpu_limit", "16", "CPU limit of every stage pod (Kubernetes quantity)"),
    Parameter("task_memory_request", "4Gi", "memory request of every stage pod (Kubernetes quantity)"),
    Parameter("task_memory_limit", "32Gi", "memory limit of every stage pod (Kubernetes quantity)"),
    Parameter(
        "store_secret",
        STORE_SECRET_NAME,
        "Kubernetes Secret whose keys become the object-storage env of every stage pod (optional)",
    ),
    Parameter(
        "resume_from", "", "run id whose trainer checkpoints (train, ddim) this run resumes from; empty: start fresh"
    ),
)
PIPELINE_PARAMETERS = TASK_PARAMETERS + CONFIG_PARAMETERS
# Only the multi-node pipeline (hybridmi-multinode) has these: the one-node pipeline has no train step they could shape.
MULTINODE_PARAMETERS = (
    Parameter(
        "train_nodes",
        "2",
        "nodes of the train step (multi-node pipeline only): a Kubeflow Trainer TrainJob of "
        "train_nodes × gpu_count GPUs; `hybridmi submit --param train_nodes=N` (N > 1) submits that pipeline",
    ),
)
PARAMETERS = {p.name: p for p in PIPELINE_PARAMETERS + MULTINODE_PARAMETERS}
RUN_TASK_NAMES = tuple(p.name for p in TASK_PARAMETERS[1:] + MULTINODE_PARAMETERS)  # what a run may set besides config

_QUANTITY = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?")
RUN_ID = re.compile(RUN_ID_PATTERN)
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_OPERATORS = {"Exists", "Equal"}
_EFFECTS = {"", "NoSchedule", "PreferNoSchedule", "NoExecute"}


def _is_toleration(t: dict) -> bool:
    return set(t) <= _TOLERATION_KEYS and t.get("operator", "Equal") in _OPERATORS and t.get("effect", "") in _EFFECTS


def check_image(ref: str) -> str:
    """A reference with an explicit, non-``latest`` tag or a digest (a node must never guess which build it runs)."""
    name, _, digest = ref.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    if not name or any(c.isspace() for c in ref) or (not digest and tag in ("", "latest")):
        raise UsageError(
            f"image {ref!r} needs an explicit non-latest tag or a digest, e.g. registry.example.com/hybridmi:0.1.0-<digest>"
        )
    return ref


def check_value(name: str, value: Any) -> Any:
    """``value`` as the run parameter ``name`` takes it (JSON text parsed for dict/list parameters); ValueError naming it."""
    if name not in PARAMETERS:
        raise UsageError(f"unknown pipeline parameter {name!r}; known: {', '.join(PARAMETERS)}")
    kind = type(PARAMETERS[name].default)
    if kind in (dict, list) and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UsageError(f"pipeline parameter {name}={value!r} is not JSON") from None
    if not isinstance(value, kind):
        raise UsageError(f"pipeline parameter {name}={value!r} must be a {kind.__name__}")
    if name == "image":
        check_image(value)
    elif name == "gpu_node_selector" and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise UsageError(f"gpu_node_selector {json.dumps(value)} must map label names to string values")
    elif name == "gpu_tolerations" and not all(isinstance(t, dict) for t in value):
        raise UsageError("gpu_tolerations must be a JSON list of objects")
    elif name == "gpu_tolerations" and (bad := [t for t in value if not _is_toleration(t)]):
        raise UsageError(
            f"gpu_tolerations entry {json.dumps(bad[0])} is not a Kubernetes toleration "
            f"(keys {', '.join(sorted(_TOLERATION_KEYS))}; operator Exists|Equal; effect NoSchedule|PreferNoSchedule|NoExecute)"
        )
    elif name.startswith("task_") and not _QUANTITY.fullmatch(value):
        raise UsageError(
            f"{name}={value!r} is not a Kubernetes quantity (e.g. 2, 500m, 8Gi); resources cannot be empty"
        )
    elif name == "gpu_count" and value and not (value.isdigit() and int(value) > 0):
        raise UsageError(f"gpu_count={value!r} is not a positive integer (or empty for no GPU)")
    elif name == "train_nodes" and not (value.isdigit() and int(value) > 0):
        raise UsageError(f"train_nodes={value!r} is not a positive integer")
    elif name == "store_secret" and not OBJECT_NAME.fullmatch(value):
        raise UsageError(
            f"store_secret={value!r} is not a Kubernetes object name (the Secret is optional: "
            "a name with no Secret behind it gives the pods no store; empty is refused by the KFP driver)"
        )
    elif name == "resume_from" and value and not RUN_ID.fullmatch(value):
        raise UsageError(f"resume_from={value!r} is not a run id (letters, digits, '.', '_', '-')")
    return value


def pipeline_arguments(config_text: str, **task_values: Any) -> dict[str, Any]:
    """Arguments for a run: the resolved config text plus checked task parameters (config parameters stay empty)."""
    if unknown := sorted(set(task_values) - set(RUN_TASK_NAMES)):
        raise UsageError(
            f"unknown pipeline parameter(s) {', '.join(unknown)}; task parameters: {', '.join(RUN_TASK_NAMES)}"
        )
    return {"config": config_text, **{k: check_value(k, v) for k, v in task_values.items()}}


def define_pipeline(
    body: Callable[[dict[str, Any]], Any],
    *,
    name: str,
    description: str,
    parameters: Sequence[Parameter],
    inputs: Sequence[inspect.Parameter] = (),
    required: Sequence[str] = (),
    returns: Any = inspect.Signature.empty,
    defaults: Mapping[str, Any] | None = None,
):
    """A ``dsl.pipeline`` whose signature is ``parameters`` (defaults from the table, or ``defaults``) plus artifact
    ``inputs``; body receives {parameter name: pipeline channel}. ``required``: parameters without a default."""

    def declared(p: Parameter) -> inspect.Parameter:
        value = (defaults or {}).get(p.name, p.default)
        # A fresh copy with sorted keys: kfp may reorder a dict default in place, which made the compiled text vary.
        default = inspect.Parameter.empty if p.name in required else json.loads(json.dumps(value, sort_keys=True))
        return inspect.Parameter(
            p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=type(p.default), default=default
        )

    # Python's order: parameters without defaults (required ones, artifact inputs) first.
    params = [declared(p) for p in parameters if p.name in required] + list(inputs)
    params += [declared(p) for p in parameters if p.name not in required]

    def pipeline_func(*args, **kwargs):
        return body({**dict(zip((p.name for p in params), args)), **kwargs})  # kfp passes the channels positionally

    pipeline_func.__signature__ = inspect.Signature(params, return_annotation=returns)
    pipeline_func.__annotations__ = {p.name: p.annotation for p in params}
    if returns is not inspect.Signature.empty:
        pipeline_func.__annotations__["return"] = returns
    pipeline_func.__name__ = pipeline_func.__qualname__ = name.replace("-", "_")
    return dsl.pipeline(name=name, description=description)(pipeline_func)


def parameters_markdown() -> str:
    """The parameter table for docs (components/README.md embeds it; a test keeps them equal)."""
    rows = ["| parameter | default | sets (task) | meaning |", "|---|---|---|---|"]
    for p in PIPELINE_PARAMETERS + MULTINODE_PARAMETERS:
        shown = p.default if isinstance(p.default, str) else json.dumps(p.default)
        default = "`hybridmi:<version>`" if p.name == "image" else f"`{shown}`"
        sets = f"`{p.config_path}` ({p.stage})" if p.config_path else "—"
        rows.append(f"| `{p.name}` | {default} | {sets} | {p.description} |")
    return "\n".join(rows) + "\n"


def stage_values(channels: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The config-parameter channels among ``channels`` that the task of ``stage`` applies."""
    return {p.name: channels[p.name] for p in stage_parameters(stage) if p.name in channels}
