"""Validate rendered Kubernetes objects against the kubernetes Python client's API models.

Strict: every key must be a field of its model (typos fail), every value must have the model's type,
and required fields must be present (the models' own client-side validation).
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client as k8s
from kubernetes.client import ApiClient

_PRIMITIVES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
_LIST = re.compile(r"list\[(.+)\]")
_DICT = re.compile(r"dict\(([^,]+), (.+)\)")


def model_name(api_version: str, kind: str) -> str:
    """'apps/v1', 'Deployment' -> 'V1Deployment' (ValueError when the client has no such model)."""
    version = api_version.rsplit("/", 1)[-1]
    name = f"{version[0].upper()}{version[1:]}{kind}"
    if not hasattr(k8s, name):
        raise ValueError(f"no Kubernetes API model for apiVersion {api_version!r} kind {kind!r}")
    return name


def _check(value: Any, type_name: str, where: str, errors: list[str]) -> None:
    if type_name in _PRIMITIVES:
        if isinstance(value, bool) and type_name != "bool" or not isinstance(value, _PRIMITIVES[type_name]):
            errors.append(f"{where}: {value!r} is not {type_name}")
        return
    if type_name in ("object", "datetime", "date"):
        return
    if m := _LIST.fullmatch(type_name):
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list")
            return
        for i, item in enumerate(value):
            _check(item, m.group(1), f"{where}[{i}]", errors)
        return
    if m := _DICT.fullmatch(type_name):
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a mapping")
            return
        for key, item in value.items():
            _check(item, m.group(2), f"{where}.{key}", errors)
        return
    model = getattr(k8s, type_name)
    if not isinstance(value, dict):
        errors.append(f"{where}: expected a {type_name} mapping")
        return
    fields = {json_key: attr for attr, json_key in model.attribute_map.items()}
    for key, item in value.items():
        if key not in fields:
            errors.append(f"{where}.{key}: not a field of {type_name}")
        else:
            _check(item, model.openapi_types[fields[key]], f"{where}.{key}", errors)


def validate_object(obj: dict) -> list[str]:
    """Problems with one object (empty when it is valid)."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if not obj.get("apiVersion") or not obj.get("kind"):
        return [f"{where}: apiVersion and kind are required"]
    if not obj.get("metadata", {}).get("name"):
        return [f"{where}: metadata.name is required"]
    try:
        name = model_name(obj["apiVersion"], obj["kind"])
    except ValueError as exc:
        return [f"{where}: {exc}"]
    errors: list[str] = []
    _check(obj, name, where, errors)
    try:  # the models raise ValueError for a missing required field
        ApiClient()._ApiClient__deserialize(obj, name)
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
    return errors
