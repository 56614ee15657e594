"""What the KFP backend's driver does with a compiled pipeline's platform fields, before any pod exists."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import yaml

from hybridmi.cluster import KFP_BACKEND_VERSION

BACKEND_TAG = KFP_BACKEND_VERSION
_SOURCE = "kubeflow/pipelines backend/src/v2/driver/"
_Doc = Mapping[str, Any]  # a part of a compiled package
_Found = Iterator[tuple[str, str, str]]  # (field, reason, source) of each refusal
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
    **dict.fromkeys(("secretAsEnv", "secretAsVolume"), "secret name"),
    **dict.fromkeys(("configMapAsEnv", "configMapAsVolume"), "config map name"),
    "pvcMount": "PVC name",
}
_K8S_SOURCE = _SOURCE + "k8s.go extendPodSpecPatch; driver/resolve.go resolveInputParameterStr"
_JSON_SOURCE = _SOURCE + "k8s.go extendPodSpecPatch; driver/resolve.go resolveK8sJsonParameter"


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


def _known(value: Any) -> bool:
    return value is not NULL and value is not RUNTIME


def _parameter(spec: _Doc, dag_inputs: _Doc) -> tuple[Any, str | None]:
    """driver/resolve.go (resolveInputs, resolveInputParameter): (value, error) of a task input bound to the parent
    DAG's input, a constant, or a value known at run time (taskOutputParameter, taskFinalStatus)."""
    if "runtimeValue" in spec:
        return spec["runtimeValue"].get("constant"), None
    name = spec.get("componentInputParameter")
    if name is None:
        return RUNTIME, None
    if name not in dag_inputs:
        return RUNTIME, f"parent DAG does not have input parameter {name}"
    return dag_inputs[name], None


def _with_defaults(values: dict[str, Any], component: _Doc) -> dict[str, Any]:
    """``values`` plus each unbound input's defaultValue, or null if it is optional (argocompiler/argo.go, resolve.go)."""
    for name, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
        if name not in values and ("defaultValue" in definition or definition.get("isOptional")):
            values[name] = definition.get("defaultValue", NULL)
    return values


def _task_inputs(task: _Doc, component: _Doc, dag_inputs: _Doc) -> dict[str, Any]:
    """The task's input parameters: its bindings, then the component's defaults, optional ones null (driver/resolve.go)."""
    bindings = task.get("inputs", {}).get("parameters", {})
    bound = {name: _parameter(spec, dag_inputs)[0] for name, spec in bindings.items()}
    if iterator := task.get("parameterIterator"):
        bound[iterator["itemInput"]] = RUNTIME
    _with_defaults(bound, component)
    # A constant that is a placeholder of another input (kfp writes base_image this way) takes that input's value.
    for name, value in bound.items():
        if isinstance(value, str) and (match := _PLACEHOLDER.fullmatch(value)):
            bound[name] = bound.get(match.group(1), RUNTIME)
    return bound


def _pod_spec_value(text: str, executor_inputs: _Doc) -> tuple[Any, str | None]:
    """driver/resolve.go (resolvePodSpecInputRuntimeParameter): (a placeholder's input as a string or the constant, error)."""
    if not (match := _PLACEHOLDER.fullmatch(text)):
        return text, None
    if (name := match.group(1)) not in executor_inputs:
        return None, "executorInput did not contain the input parameter " + name
    value = executor_inputs[name]
    return (value if value is RUNTIME or isinstance(value, str) else ""), None  # GetStringValue() of a non-string


def _container_refusals(container: _Doc, inputs: _Doc) -> _Found:
    """driver/driver.go (initPodSpecPatch): image, CPU/memory quantities and the accelerator."""
    source = _SOURCE + "driver.go initPodSpecPatch"
    resources = container.get("resources", {})
    accelerator = resources.get("accelerator", {})
    fields = {"image": container.get("image", "")} | {n: resources[n] for n in _RESOURCES if resources.get(n)}
    fields.update({f"accelerator.{k}": accelerator[k] for k in ("resourceType", "resourceCount") if accelerator.get(k)})
    resolved = {}
    for name, text in fields.items():
        resolved[name], error = _pod_spec_value(text, inputs)
        if error:
            yield name, error, source
    if (image := resolved.get("image")) is not RUNTIME and not image:
        # Kubernetes pkg/apis/core/validation (validateContainers): a pod's container image is required.
        yield "image", "resolves to an empty image; the pod is refused (containers[0].image: Required value)", source
    # The accelerator count is parsed only when type and count are both non-empty (else: no accelerator limit).
    kind, count = resolved.get("accelerator.resourceType"), resolved.get("accelerator.resourceCount")
    parsed = (*_RESOURCES, "accelerator.resourceCount") if kind and count and kind is not RUNTIME else _RESOURCES
    for name in parsed:
        value = resolved.get(name)
        if _known(value) and not QUANTITY.fullmatch(value):
            yield name, f"ParseQuantity({value!r}): quantities must match the regular expression", source


def _platform_refusals(config: _Doc, dag_inputs: _Doc) -> _Found:
    """driver/k8s.go (extendPodSpecPatch): names, node selector and tolerations, resolved against the parent DAG's
    inputs (driver/resolve.go resolveInputParameter: a parameter the DAG lacks is an error; a null one is skipped)."""
    for field, what in _NAMED_REFERENCES.items():
        for i, entry in enumerate(config.get(field, [])):
            get = entry.get
            spec = get("secretNameParameter") or get("configMapNameParameter") or get("pvcNameParameter")
            value, reason = (NULL, None) if spec is None else _parameter(spec, dag_inputs)
            if spec is None and not (get("secretName") or get("configMapName") or get("constant")):
                reason = f"missing either a {what} or a {what} parameter"
            elif _known(value) and not isinstance(value, str):
                reason = f"{what} {json.dumps(value)}: Expected a string"
            elif value == "":
                reason = f"{what} {spec}: Expected a non-empty string"
            if reason:
                yield f"{field}[{i}]", reason, _K8S_SOURCE
    if (selector := config.get("nodeSelector", {}).get("nodeSelectorJson")) is not None:
        value, reason = _parameter(selector, dag_inputs)
        if _known(value) and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            reason = f"{json.dumps(value)} does not unmarshal into map[string]string"
        if reason:
            yield "nodeSelector", reason, _JSON_SOURCE
    for i, entry in enumerate(config.get("tolerations", [])):
        value, reason = _parameter(entry["tolerationJson"], dag_inputs) if "tolerationJson" in entry else (NULL, None)
        tolerations = [value] if isinstance(value, dict) else value
        if _known(value) and not (isinstance(tolerations, list) and all(isinstance(t, dict) for t in tolerations)):
            reason = "encountered unexpected toleration proto value, must be either struct or list type"
        if reason:
            yield f"tolerations[{i}]", reason, _K8S_SOURCE


def _walk(spec: _Doc, platform: _Doc, component: _Doc, dag_inputs: _Doc, path: str) -> Iterator[Refusal]:
    for name, task in component["dag"]["tasks"].items():
        child = spec["components"][task["componentRef"]["name"]]
        inputs, where = _task_inputs(task, child, dag_inputs), path + name
        if "dag" in child:
            yield from _walk(spec, platform, child, inputs, where + "/")
            continue
        label = child["executorLabel"]
        container = spec["deploymentSpec"]["executors"][label].get("container")
        found = list(_container_refusals(container, inputs)) if container else []
        found += _platform_refusals(platform.get(label, {}), dag_inputs)
        yield from (Refusal(where, label, field, reason, source) for field, reason, source in found)


def check_package(docs: Sequence[_Doc], arguments: _Doc | None = None) -> list[Refusal]:
    """Every field of the package ``docs`` (its YAML documents) that the driver would refuse for a run with ``arguments``
    (the root DAG's inputs: those arguments, the rest from defaults as argocompiler/argo.go fills them)."""
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return list(_walk(spec, platform, spec["root"], _with_defaults(dict(arguments or {}), spec["root"]), ""))


def check_package_text(text: str, arguments: _Doc | None = None) -> list[Refusal]:
    """``check_package`` of a compiled package's YAML text."""
    return check_package(list(yaml.safe_load_all(text)), arguments)
