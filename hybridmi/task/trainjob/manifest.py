"""The TrainJob of a multi-node train step, rendered as a plain dict (pure: no client, no I/O)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from hybridmi.cluster import RESUME_FROM_VAR, RUN_ID_VAR, SHM_SIZE, STORE_SECRET_KEYS, TRAINER_RUNTIME
from hybridmi.errors import UsageError

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
MIN_TRAINER = "v2.2"  # the oldest Kubeflow Trainer whose TrainJob has every field rendered here
NODE = "node"  # the torch-distributed runtime's replicated job and its container
PATCH_MANAGER = "hybridmi.io/pipeline"  # owner of our runtimePatches entry (a domain-prefixed path)
CONFIG_TEXT_VAR = "HYBRIDMI_CONFIG_TEXT"  # the resolved config (YAML) every process reads (hybridmi stage --config-env)
RUN_ID_LABEL = "hybridmi.io/run-id"
CONFIG_HASH_ANNOTATION = "hybridmi.io/config-hash"

_RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
MAX_NAME = 50  # JobSet names the pods <trainjob>-node-0-<i> and gives them that hostname (at most 63 characters)


def trainjob_name(run_id: str, config_hash: str) -> str:
    """``hybridmi-train-<10 hex>``: one name per (run, config), so a retried task finds its run's TrainJob."""
    return "hybridmi-train-" + hashlib.sha256(f"{run_id}/{config_hash}".encode()).hexdigest()[:10]


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value > 0


@dataclass(frozen=True)
class NodeSettings:
    """The run parameters that shape the TrainJob's nodes (pipelines/parameters.py); UsageError naming a bad one."""

    image: str
    nodes: int | str  # pods, one per node; the component passes the run parameter's text
    gpu_type: str = "nvidia.com/gpu"
    gpu_count: str = "1"  # GPUs (= processes) per node; "" or gpu_type "": no GPU request, one process per node
    cpu_request: str = "1"
    cpu_limit: str = "16"
    memory_request: str = "4Gi"
    memory_limit: str = "32Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    image_pull_secret: str = ""
    store_secret: str = "hybridmi-store"  # Secret whose keys become the storage env (optional keys)
    deadline_s: int = 24 * 3600  # activeDeadlineSeconds: the train step's timeout

    def __post_init__(self) -> None:
        if isinstance(self.nodes, bool) or not str(self.nodes).strip().isdigit() or int(self.nodes) < 1:
            raise UsageError(f"train_nodes={self.nodes!r} is not a positive integer")
        object.__setattr__(self, "nodes", int(self.nodes))
        if self.gpu_count and not (self.gpu_count.isdigit() and int(self.gpu_count) > 0):
            raise UsageError(f"gpu_count={self.gpu_count!r} is not a positive integer (or empty for no GPU)")
        if not _positive(self.deadline_s):
            raise UsageError(f"TrainJob deadline_s={self.deadline_s!r} is not a positive integer")
        for what in ("image", "store_secret"):
            if not getattr(self, what):
                raise UsageError(f"TrainJob {what} is empty")

    @property
    def gpus_per_node(self) -> int:
        """GPUs (and processes) per node; 0 when gpu_type or gpu_count is empty."""
        return int(self.gpu_count) if self.gpu_type and self.gpu_count else 0


@dataclass(frozen=True)
class TrainJobRequest:
    """Everything a multi-node train step's TrainJob says; checked when built (UsageError naming the field)."""

    name: str
    namespace: str
    settings: NodeSettings
    config_text: str  # the resolved config, YAML
    config_hash: str
    run_id: str  # HYBRIDMI_RUN_ID of every process: checkpoints under checkpoints/<run id>/…
    dataset_uri: str  # s3://bucket/key of the published data set
    model_uri: str  # s3://bucket/key where rank 0 publishes the model
    resume_from: str = ""
    owner_pod: tuple[str, str] | None = None  # (name, uid) of the task's pod; None: no owner

    def __post_init__(self) -> None:
        if not _RFC1035.fullmatch(self.name) or len(self.name) > MAX_NAME:
            label = f"a DNS label of at most {MAX_NAME} characters starting with a letter"
            raise UsageError(f"TrainJob name {self.name!r} is not {label}")
        for what in ("dataset_uri", "model_uri"):
            if not (uri := getattr(self, what)).startswith("s3://"):
                raise UsageError(
                    f"TrainJob {what}={uri!r} is not an s3:// URI (every node reads it from object storage)"
                )
        for what in ("namespace", "run_id", "config_text"):
            if not getattr(self, what):
                raise UsageError(f"TrainJob {what} is empty")
        if self.owner_pod is not None and (len(self.owner_pod) != 2 or not all(self.owner_pod)):
            raise UsageError(f"TrainJob owner_pod={self.owner_pod!r} is not a (pod name, pod uid) pair")


def _trainer(request: TrainJobRequest) -> dict[str, Any]:
    """Image, torchrun starting the train stage on object-storage URIs, env, node count and resources."""
    nodes = request.settings
    env = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": nodes.store_secret, "key": key, "optional": True}}}
        for key, var in STORE_SECRET_KEYS.items()
    ]
    env.append({"name": RUN_ID_VAR, "value": request.run_id})
    if request.resume_from:
        env.append({"name": RESUME_FROM_VAR, "value": request.resume_from})
    env.append({"name": CONFIG_TEXT_VAR, "value": request.config_text})
    limits = {"cpu": nodes.cpu_limit, "memory": nodes.memory_limit}
    if nodes.gpus_per_node:
        limits[nodes.gpu_type] = str(nodes.gpus_per_node)
    return {
        "image": nodes.image,
        "command": ["torchrun"],
        "args": ["--module", "hybridmi.cli", "stage", "train", "--config-env", CONFIG_TEXT_VAR]
        + ["--input", f"dataset={request.dataset_uri}", "--output", f"model={request.model_uri}"],
        "env": env,
        "numNodes": nodes.nodes,
        "numProcPerNode": max(nodes.gpus_per_node, 1),
        "resourcesPerNode": {"requests": {"cpu": nodes.cpu_request, "memory": nodes.memory_request}, "limits": limits},
    }


def _pod_patch(nodes: NodeSettings) -> dict[str, Any]:
    """Node scheduling, pull secret and a memory-backed /dev/shm: what the Trainer API lets only runtimePatches set."""
    spec: dict[str, Any] = {
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}],
        "containers": [{"name": NODE, "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}],
    }
    if nodes.node_selector:
        spec["nodeSelector"] = dict(nodes.node_selector)
    if nodes.tolerations:
        spec["tolerations"] = [dict(t) for t in nodes.tolerations]
    if nodes.image_pull_secret:
        spec["imagePullSecrets"] = [{"name": nodes.image_pull_secret}]
    job = {"name": NODE, "template": {"spec": {"template": {"spec": spec}}}}
    return {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [job]}}}}


def render_trainjob(request: TrainJobRequest) -> dict[str, Any]:
    """The TrainJob object to create (``CustomObjectsApi.create_namespaced_custom_object`` body)."""
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
            "trainer": _trainer(request),
            "runtimePatches": [_pod_patch(request.settings)],
            "activeDeadlineSeconds": request.settings.deadline_s,
        },
    }
