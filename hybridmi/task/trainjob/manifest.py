"""The TrainJob of a multi-node train step, rendered as a plain dict (pure: no client, no I/O).

A TrainJob (``trainer.kubeflow.org/v1alpha1``, Kubeflow Trainer ``TRAINER_VERSION``) on the
``torch-distributed`` ClusterTrainingRuntime runs ``nodes`` pods of the project image. On each, the
Trainer sets ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and
``PET_MASTER_PORT``, which torchrun takes as its defaults; torchrun starts ``numProcPerNode`` processes
(one per GPU) with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` set, and
each process runs the train stage's command line (``train_command``, docs/ARCHITECTURE.md):

    hybridmi stage train --config-env HYBRIDMI_CONFIG_TEXT --input dataset=s3://… --output model=s3://…

with the storage Secret's keys as env (references, never values) and the pipeline run's id, so its
checkpoints are mirrored under that run and rank 0 publishes the model where the pipeline task
fetches it. The task's pod owns the TrainJob (``metadata.ownerReferences``, ``blockOwnerDeletion``
false), so Kubernetes' garbage collector deletes it with the pod. Field names were
read in the Trainer's API types and CRD of that tag; the tests validate every rendering against the
CRD's openAPIV3Schema. ``spec.runtimePatches`` and ``spec.activeDeadlineSeconds`` came with Trainer
v2.2.0 (``MIN_TRAINER``; v2.1 had ``podTemplateOverrides``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from hybridmi.cluster import RESUME_FROM_VAR, RUN_ID_VAR, SHM_SIZE, STORE_SECRET_KEYS, TRAINER_RUNTIME

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
KIND = "TrainJob"
MIN_TRAINER = "v2.2"  # the oldest Kubeflow Trainer whose TrainJob has every field rendered here
NODE = "node"  # the torch-distributed runtime's replicated job and its container
PATCH_MANAGER = "hybridmi.io/pipeline"  # owner of our runtimePatches entry (a domain-prefixed path)
CONFIG_TEXT_VAR = "HYBRIDMI_CONFIG_TEXT"  # the resolved config (YAML) every process reads (hybridmi stage --config-env)
RUN_ID_LABEL = "hybridmi.io/run-id"
CONFIG_HASH_ANNOTATION = "hybridmi.io/config-hash"
NAME_PREFIX = "hybridmi-train-"

_RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
# JobSet names the pods <trainjob>-node-0-<i> and gives them that hostname (at most 63 characters).
MAX_NAME = 50


def trainjob_name(run_id: str, config_hash: str) -> str:
    """``hybridmi-train-<10 hex>``: one name per (run, config), so a retried task finds its run's TrainJob."""
    return NAME_PREFIX + hashlib.sha256(f"{run_id}/{config_hash}".encode()).hexdigest()[:10]


def train_command(dataset_uri: str, model_uri: str) -> tuple[list[str], list[str]]:
    """(command, args) of every node: torchrun (PET_* env) starting the train stage on object-storage URIs."""
    return ["torchrun"], [
        "--module",
        "hybridmi.cli",
        "stage",
        "train",
        "--config-env",
        CONFIG_TEXT_VAR,
        "--input",
        f"dataset={dataset_uri}",
        "--output",
        f"model={model_uri}",
    ]


@dataclass(frozen=True)
class TrainJobRequest:
    """Everything a multi-node train step's TrainJob says; checked when built (ValueError naming the field)."""

    name: str
    namespace: str
    image: str
    nodes: int  # pods, one per node
    gpus_per_node: int  # processes per node = GPUs per node; 0: no GPU request, one process per node
    config_text: str  # the resolved config, YAML
    config_hash: str
    run_id: str  # HYBRIDMI_RUN_ID of every process: checkpoints under checkpoints/<run id>/…
    dataset_uri: str  # s3://bucket/key of the published data set
    model_uri: str  # s3://bucket/key where rank 0 publishes the model
    store_secret: str  # Secret whose keys become the storage env (optional keys, as in the pipeline's pods)
    deadline_s: int  # activeDeadlineSeconds: the train step's timeout
    gpu_resource: str = "nvidia.com/gpu"
    cpu_request: str = "1"
    cpu_limit: str = "16"
    memory_request: str = "4Gi"
    memory_limit: str = "32Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    image_pull_secret: str = ""
    resume_from: str = ""
    owner_pod: tuple[str, str] | None = None  # (name, uid) of the task's pod; None: no owner

    def __post_init__(self) -> None:
        if not _RFC1035.fullmatch(self.name) or len(self.name) > MAX_NAME:
            raise ValueError(
                f"TrainJob name {self.name!r} is not a DNS label of at most {MAX_NAME} characters starting with a letter"
            )
        for what, value in (("nodes", self.nodes), ("deadline_s", self.deadline_s)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainJob {what}={value!r} is not a positive integer")
        if isinstance(self.gpus_per_node, bool) or not isinstance(self.gpus_per_node, int) or self.gpus_per_node < 0:
            raise ValueError(f"TrainJob gpus_per_node={self.gpus_per_node!r} is not a whole number")
        if self.gpus_per_node and not self.gpu_resource:
            raise ValueError(f"TrainJob asks for {self.gpus_per_node} GPUs per node but names no GPU resource")
        for what, uri in (("dataset_uri", self.dataset_uri), ("model_uri", self.model_uri)):
            if not uri.startswith("s3://"):
                raise ValueError(
                    f"TrainJob {what}={uri!r} is not an s3:// URI (every node reads it from object storage)"
                )
        for what, value in (
            ("namespace", self.namespace),
            ("image", self.image),
            ("run_id", self.run_id),
            ("store_secret", self.store_secret),
            ("config_text", self.config_text),
        ):
            if not value:
                raise ValueError(f"TrainJob {what} is empty")
        if self.owner_pod is not None and (len(self.owner_pod) != 2 or not all(self.owner_pod)):
            raise ValueError(f"TrainJob owner_pod={self.owner_pod!r} is not a (pod name, pod uid) pair")


def _env(request: TrainJobRequest) -> list[dict[str, Any]]:
    secret = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": request.store_secret, "key": key, "optional": True}}}
        for key, var in STORE_SECRET_KEYS.items()
    ]
    resume = [{"name": RESUME_FROM_VAR, "value": request.resume_from}] if request.resume_from else []
    return [
        *secret,
        {"name": RUN_ID_VAR, "value": request.run_id},
        *resume,
        {"name": CONFIG_TEXT_VAR, "value": request.config_text},
    ]


def _resources(request: TrainJobRequest) -> dict[str, Any]:
    limits = {"cpu": request.cpu_limit, "memory": request.memory_limit}
    if request.gpus_per_node:
        limits[request.gpu_resource] = str(request.gpus_per_node)
    return {"requests": {"cpu": request.cpu_request, "memory": request.memory_request}, "limits": limits}


def _pod_patch(request: TrainJobRequest) -> dict[str, Any]:
    """Node scheduling, pull secret and a memory-backed /dev/shm: what the Trainer API lets only runtimePatches set."""
    spec: dict[str, Any] = {
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}],
        "containers": [{"name": NODE, "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}],
    }
    if request.node_selector:
        spec["nodeSelector"] = dict(request.node_selector)
    if request.tolerations:
        spec["tolerations"] = [dict(t) for t in request.tolerations]
    if request.image_pull_secret:
        spec["imagePullSecrets"] = [{"name": request.image_pull_secret}]
    job = {"name": NODE, "template": {"spec": {"template": {"spec": spec}}}}
    return {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [job]}}}}


def render_trainjob(request: TrainJobRequest) -> dict[str, Any]:
    """The TrainJob object to create (``CustomObjectsApi.create_namespaced_custom_object`` body)."""
    command, args = train_command(request.dataset_uri, request.model_uri)
    labels = {"app.kubernetes.io/part-of": "hybridmi", "app.kubernetes.io/component": "train"}
    if _LABEL_VALUE.fullmatch(request.run_id):  # KFP run ids (UUIDs) always are; the annotation has it regardless
        labels[RUN_ID_LABEL] = request.run_id
    metadata: dict[str, Any] = {
        "name": request.name,
        "namespace": request.namespace,
        "labels": labels,
        "annotations": {RUN_ID_LABEL: request.run_id, CONFIG_HASH_ANNOTATION: request.config_hash},
    }
    if request.owner_pod is not None:
        # blockOwnerDeletion true would need update on pods/finalizers (OwnerReferencesPermissionEnforcement).
        pod, uid = request.owner_pod
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid, "blockOwnerDeletion": False}
        ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "runtimeRef": {"name": TRAINER_RUNTIME, "apiGroup": GROUP, "kind": "ClusterTrainingRuntime"},
            "trainer": {
                "image": request.image,
                "command": command,
                "args": args,
                "env": _env(request),
                "numNodes": request.nodes,
                "numProcPerNode": max(request.gpus_per_node, 1),
                "resourcesPerNode": _resources(request),
            },
            "runtimePatches": [_pod_patch(request)],
            "activeDeadlineSeconds": request.deadline_s,
        },
    }
