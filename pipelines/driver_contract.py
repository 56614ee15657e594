"""What the KFP backend's driver does with a compiled pipeline's platform fields, before any pod exists."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from hybridmi.cluster import KFP_BACKEND_VERSION

BACKEND_TAG = KFP_BACKEND_VERSION
# argocompiler/argo.go (Compile): a root parameter the run omits takes its defaultValue; an optional one without
# a default becomes a null Value, which every platform rule below skips (errors.Is(err, ErrResolvedParameterNull)).
NULL = None


class _RuntimeValue:
    """A value the driver learns only at run time (a task's output, a ParallelFor item): no rule can judge it here."""

    def __repr__(self) -> str:
        return "<runtime value>"


RUNTIME = _RuntimeValue()
# driver/resolve.go (resolvePodSpecInputRuntimeParameter): a pod-spec field written as this placeholder is read
# from the task's own executor inputs; any other string is a constant.
_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
# k8s.io/apimachinery pkg/api/resource (ParseQuantity), which driver/driver.go (getPodResource and the accelerator
# count) calls: a signed decimal number, then one suffix: binary (Ki..Ei), decimal (n u m "" k M G T P E) or an exponent.
QUANTITY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?")
_RESOURCES = ("resourceCpuLimit", "resourceCpuRequest", "resourceMemoryLimit", "resourceMemoryRequest")
# driver/k8s.go (extendPodSpecPatch): fields whose name parameter goes through resolveInputParameterStr.
_NAMED_REFERENCES = {
    "imagePullSecret": "image pull secret",
    "secretAsEnv": "secret name",
    "secretAsVolume": "secret name",
    "configMapAsEnv": "config map name",
    "configMapAsVolume": "config map name",
    "pvcMount": "PVC name",
}


@dataclass(frozen=True)
class Refusal:
    """One field the driver would refuse: where (task path, executor), which field, why, and the rule's source."""

    task: str
    executor: str
    field: str
    reason: str
    source: str

    def __str__(self) -> str:
        return f"task {self.task} ({self.executor}): {self.field}: {self.reason} [{self.source} @ {BACKEND_TAG}]"


def _source(path: str) -> str:
    return f"kubeflow/pipelines backend/src/v2/{path}"


def _value_of(spec: Mapping[str, Any], dag_inputs: Mapping[str, Any]) -> Any:
    """A task input as driver/resolve.go (resolveInputs) resolves it: from the parent DAG, a constant, or at run time."""
    if "componentInputParameter" in spec:
        return dag_inputs.get(spec["componentInputParameter"], RUNTIME)
    if "runtimeValue" in spec:
        return spec["runtimeValue"].get("constant")
    return RUNTIME  # taskOutputParameter, taskFinalStatus


def _task_inputs(
    task: Mapping[str, Any], component: Mapping[str, Any], dag_inputs: Mapping[str, Any]
) -> dict[str, Any]:
    """The task's input parameters: its bindings, then the component's defaults, optional ones null (driver/resolve.go)."""
    bound = {name: _value_of(spec, dag_inputs) for name, spec in task.get("inputs", {}).get("parameters", {}).items()}
    iterator = task.get("parameterIterator")
    if iterator:
        bound[iterator["itemInput"]] = RUNTIME
    for name, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
        if name not in bound:
            if "defaultValue" in definition:
                bound[name] = definition["defaultValue"]
            elif definition.get("isOptional"):
                bound[name] = NULL
    # A constant that is a placeholder of another input (kfp writes base_image this way) takes that input's value.
    for name, value in bound.items():
        if isinstance(value, str) and (match := _PLACEHOLDER.fullmatch(value)):
            bound[name] = bound.get(match.group(1), RUNTIME)
    return bound


def _pod_spec_value(text: str, executor_inputs: Mapping[str, Any]) -> Any:
    """driver/resolve.go (resolvePodSpecInputRuntimeParameter): a placeholder's input as a string, else the constant."""
    match = _PLACEHOLDER.fullmatch(text)
    if not match:
        return text
    if match.group(1) not in executor_inputs:
        raise LookupError("executorInput did not contain the input parameter " + match.group(1))
    value = executor_inputs[match.group(1)]
    if value is RUNTIME or isinstance(value, str):
        return value
    return ""  # GetStringValue() of a non-string value


def _container_refusals(container: Mapping[str, Any], inputs: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """driver/driver.go (initPodSpecPatch): image, CPU/memory quantities and the accelerator."""
    source = _source("driver/driver.go initPodSpecPatch")
    fields = {"image": container.get("image", "")}
    resources = container.get("resources", {})
    fields.update({name: resources[name] for name in _RESOURCES if resources.get(name)})
    accelerator = resources.get("accelerator", {})
    for key in ("resourceType", "resourceCount"):
        if accelerator.get(key):
            fields[f"accelerator.{key}"] = accelerator[key]
    resolved = {}
    for name, text in fields.items():
        try:
            resolved[name] = _pod_spec_value(text, inputs)
        except LookupError as exc:
            yield name, str(exc), source
    image = resolved.get("image")
    if image is not RUNTIME and not image:
        # Kubernetes pkg/apis/core/validation (validateContainers): a pod's container image is required.
        yield "image", "resolves to an empty image; the pod is refused (containers[0].image: Required value)", source
    for name in _RESOURCES:
        value = resolved.get(name)
        if value is not None and value is not RUNTIME and not QUANTITY.fullmatch(value):
            yield name, f"ParseQuantity({value!r}): quantities must match the regular expression", source
    kind, count = resolved.get("accelerator.resourceType"), resolved.get("accelerator.resourceCount")
    # Both non-empty: the count is parsed as a quantity; either empty: no accelerator limit, no error.
    if kind and count and RUNTIME not in (kind, count) and not QUANTITY.fullmatch(count):
        yield (
            "accelerator.resourceCount",
            f"ParseQuantity({count!r}): quantities must match the regular expression",
            source,
        )


def _parameter(spec: Mapping[str, Any], dag_inputs: Mapping[str, Any]) -> tuple[Any, str | None]:
    """driver/resolve.go (resolveInputParameter) against the parent DAG's inputs: (value, error)."""
    if "runtimeValue" in spec:
        return spec["runtimeValue"].get("constant"), None
    name = spec.get("componentInputParameter")
    if name is None:
        return RUNTIME, None  # a task output: resolved at run time
    if name not in dag_inputs:
        return None, f"parent DAG does not have input parameter {name}"
    return dag_inputs[name], None


def _platform_refusals(config: Mapping[str, Any], dag_inputs: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """driver/k8s.go (extendPodSpecPatch): names, node selector and tolerations, resolved against the parent DAG's inputs."""
    source = _source("driver/k8s.go extendPodSpecPatch; driver/resolve.go resolveInputParameterStr")
    for field, what in _NAMED_REFERENCES.items():
        for i, entry in enumerate(config.get(field, [])):
            spec = (
                entry.get("secretNameParameter") or entry.get("configMapNameParameter") or entry.get("pvcNameParameter")
            )
            if spec is None:
                if not (entry.get("secretName") or entry.get("configMapName") or entry.get("constant")):
                    yield f"{field}[{i}]", f"missing either a {what} or a {what} parameter", source
                continue
            value, error = _parameter(spec, dag_inputs)
            if error:
                yield f"{field}[{i}]", error, source
            elif value is NULL or value is RUNTIME:
                continue  # null: the driver skips the entry (ErrResolvedParameterNull)
            elif not isinstance(value, str):
                yield f"{field}[{i}]", f"{what} {json.dumps(value)}: Expected a string", source
            elif value == "":
                yield f"{field}[{i}]", f"{what} {spec}: Expected a non-empty string", source
    selector = config.get("nodeSelector", {}).get("nodeSelectorJson")
    if selector is not None:
        value, error = _parameter(selector, dag_inputs)
        json_source = _source("driver/k8s.go extendPodSpecPatch; driver/resolve.go resolveK8sJsonParameter")
        if error:
            yield "nodeSelector", error, json_source
        elif (
            value is not NULL
            and value is not RUNTIME
            and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))
        ):
            yield "nodeSelector", f"{json.dumps(value)} does not unmarshal into map[string]string", json_source
    for i, entry in enumerate(config.get("tolerations", [])):
        if "tolerationJson" not in entry:
            continue
        value, error = _parameter(entry["tolerationJson"], dag_inputs)
        if error:
            yield f"tolerations[{i}]", error, source
        elif value is not NULL and value is not RUNTIME:
            tolerations = [value] if isinstance(value, dict) else value
            if not isinstance(tolerations, list) or not all(isinstance(t, dict) for t in tolerations):
                yield (
                    f"tolerations[{i}]",
                    "encountered unexpected toleration proto value, must be either struct or list type",
                    source,
                )


def _walk(
    spec: Mapping[str, Any],
    platform: Mapping[str, Any],
    component: Mapping[str, Any],
    dag_inputs: Mapping[str, Any],
    path: str,
) -> Iterator[Refusal]:
    for name, task in component["dag"]["tasks"].items():
        child = spec["components"][task["componentRef"]["name"]]
        inputs = _task_inputs(task, child, dag_inputs)
        where = f"{path}{name}"
        if "dag" in child:
            yield from _walk(spec, platform, child, inputs, where + "/")
            continue
        label = child["executorLabel"]
        container = spec["deploymentSpec"]["executors"][label].get("container")
        found = list(_container_refusals(container, inputs)) if container else []
        found += _platform_refusals(platform.get(label, {}), dag_inputs)
        yield from (Refusal(where, label, field, reason, source) for field, reason, source in found)


def root_inputs(spec: Mapping[str, Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The root DAG's inputs for a run with ``arguments``: argocompiler/argo.go fills the rest from defaults (null if optional)."""
    values = dict(arguments)
    for name, definition in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items():
        if name not in values:
            if "defaultValue" in definition:
                values[name] = definition["defaultValue"]
            elif definition.get("isOptional"):
                values[name] = NULL
    return values


def check_package(docs: Sequence[Mapping[str, Any]], arguments: Mapping[str, Any] | None = None) -> list[Refusal]:
    """Every field of the package ``docs`` (its YAML documents) that the driver would refuse for a run with ``arguments``."""
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return list(_walk(spec, platform, spec["root"], root_inputs(spec, arguments or {}), ""))


def check_package_text(text: str, arguments: Mapping[str, Any] | None = None) -> list[Refusal]:
    """``check_package`` of a compiled package's YAML text."""
    import yaml

    return check_package(list(yaml.safe_load_all(text)), arguments)
