"""The Kubeflow Trainer TrainJob CRD (vendored, sha256-checked) and what an API server does with objects of it.

A Kubernetes API server prunes the fields a CRD's structural openAPIV3Schema does not declare
(``prune_unknown``): silently under ``fieldValidation=Ignore``, with a warning under ``Warn`` (the
default), and under ``Strict`` it refuses the object instead, naming every such field. Then it checks
the rest: types, required fields, enums, patterns, bounds, item counts, unique keys of map-like lists
(``validate_trainjob``, which refuses unknown fields as well, so a misspelt field fails here).
CEL rules (``x-kubernetes-validations``) are not evaluated: the one that concerns a new TrainJob's
name is written out in ``name_problems``. ``CRD_FILE`` is the pinned release's CRD, ``OLDER_CRD_FILE``
that of v2.1.0 (no runtimePatches, no activeDeadlineSeconds).
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator, ValidationError, validators

HERE = Path(__file__).resolve().parent / "trainer_crd"
CRD_FILE = "trainer.kubeflow.org_trainjobs.yaml.gz"
OLDER_CRD_FILE = "trainer.kubeflow.org_trainjobs.v2.1.0.yaml.gz"
RUNTIME_FILE = "torch_distributed.yaml"
SOURCE = json.loads((HERE / "SOURCE.json").read_text())


def vendored(name: str) -> bytes:
    """A vendored upstream file (decompressed); AssertionError when it is not the recorded one."""
    data = (HERE / name).read_bytes()
    data = gzip.decompress(data) if name.endswith(".gz") else data
    record = SOURCE["files"][name]
    digest = hashlib.sha256(data).hexdigest()
    assert digest == record["sha256"], f"{HERE / name} is not {record['url']} (sha256 {digest})"
    return data


@functools.lru_cache(maxsize=None)
def _crd(crd_file: str = CRD_FILE) -> dict:
    return yaml.safe_load(vendored(crd_file))


def runtime() -> dict:
    """The torch-distributed ClusterTrainingRuntime of the same tag."""
    return yaml.safe_load(vendored(RUNTIME_FILE))


def crd() -> dict:
    return copy.deepcopy(_crd())


def version_schema(version: str = "v1alpha1", crd_file: str = CRD_FILE) -> dict:
    (entry,) = [v for v in _crd(crd_file)["spec"]["versions"] if v["name"] == version]
    return copy.deepcopy(entry["schema"]["openAPIV3Schema"])


def _prune(value: Any, schema: dict, path: str, pruned: list[str]) -> None:
    """Drop from ``value`` (in place) what ``schema`` does not declare, appending each dropped field's path."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{i}]", pruned)
    if not isinstance(value, dict):
        return
    properties, additional = schema.get("properties", {}), schema.get("additionalProperties")
    for key in list(value):
        child = f"{path}.{key}" if path else key
        if key in properties:
            _prune(value[key], properties[key], child, pruned)
        elif isinstance(additional, dict):
            _prune(value[key], additional, child, pruned)
        elif not (additional is True or schema.get("x-kubernetes-preserve-unknown-fields")):
            pruned.append(child)
            del value[key]


def prune_unknown(obj: dict, crd_file: str = CRD_FILE) -> tuple[dict, list[str]]:
    """(the object as the API server stores it, the paths of the fields it dropped, sorted: "spec.runtimePatches").

    As apiextensions-apiserver's structural pruning: apiVersion, kind and metadata (ObjectMeta) are
    not the schema's to prune; list items are named ``field[i]``.
    """
    out, pruned = copy.deepcopy(obj), []
    root = version_schema(crd_file=crd_file)
    for key in [k for k in out if k not in ("apiVersion", "kind", "metadata")]:
        if key in root.get("properties", {}):
            _prune(out[key], root["properties"][key], key, pruned)
        else:
            pruned.append(key)
            del out[key]
    return out, sorted(pruned)


def strict(schema: Any) -> Any:
    """The schema as JSON Schema: int-or-string as anyOf, nullable as null, closed objects (unknown fields refused)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _list_map_keys(validator, keys, instance, schema):
    """``x-kubernetes-list-type: map``: no two items with the same key fields (e.g. two env vars of one name)."""
    if not validator.is_type(instance, "array"):
        return
    seen = set()
    for item in instance:
        key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys) if isinstance(item, dict) else None
        if key in seen:
            yield ValidationError(f"two items with the same {', '.join(keys)}: {[item.get(k) for k in keys]}")
        seen.add(key)


StrictValidator = validators.extend(Draft7Validator, {"x-kubernetes-list-map-keys": _list_map_keys})
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def name_problems(obj: dict) -> list[str]:
    """The TrainJob's CEL rules on metadata.name (RFC 1035 label, at most 63 characters)."""
    name = str(obj.get("metadata", {}).get("name", ""))
    problems = [] if _RFC1035.match(name) else [f"metadata.name {name!r} must match RFC 1035 DNS label format"]
    return problems + ([f"metadata.name {name!r} must be no more than 63 characters"] if len(name) > 63 else [])


@functools.lru_cache(maxsize=None)
def _validator(crd_file: str = CRD_FILE) -> Draft7Validator:
    return StrictValidator(strict(version_schema(crd_file=crd_file)))


def validate_trainjob(obj: dict, crd_file: str = CRD_FILE) -> list[str]:
    """Every problem of a TrainJob object (empty when a strict API server would accept its shape)."""
    problems = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in sorted(_validator(crd_file).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
    crd_spec = _crd(crd_file)["spec"]
    if obj.get("apiVersion") != f"{crd_spec['group']}/v1alpha1" or obj.get("kind") != crd_spec["names"]["kind"]:
        problems.append(f"apiVersion/kind {obj.get('apiVersion')}/{obj.get('kind')} is not this CRD's")
    return problems + name_problems(obj)
