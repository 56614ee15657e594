"""Cluster facts shared by the pipelines, the runners, the Kubernetes manifests and their tests (one home each)."""

from __future__ import annotations

import re

# Default of the gpu_tolerations parameter (kfp.kubernetes.add_toleration_json).
GPU_TOLERATION: dict[str, str] = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# The label of kind's "GPU" worker; kind-e2e passes it as gpu_node_selector (not a default anywhere).
GPU_NODE_LABELS: dict[str, str] = {"hybridmi.io/accelerator": "nvidia-gpu"}

# The Secret every stage pod reads object storage from (kfp.kubernetes.use_secret_as_env, optional):
# its keys and the environment variables they become (the names hybridmi.store and the task read).
STORE_SECRET_NAME = "hybridmi-store"
STORE_SECRET_KEYS: dict[str, str] = {
    "store": "HYBRIDMI_STORE",  # s3://bucket/prefix for data sets and checkpoints
    "endpoint": "HYBRIDMI_S3_ENDPOINT",
    "secure": "HYBRIDMI_S3_SECURE",
    "region": "HYBRIDMI_S3_REGION",
    "accesskey": "AWS_ACCESS_KEY_ID",
    "secretkey": "AWS_SECRET_ACCESS_KEY",
}

# KFP labels every pod of a run with its run id; stage pods get it as RUN_ID_VAR (downward API), local runners set it.
RUN_ID_LABEL = "pipeline/runid"
RUN_ID_VAR = "HYBRIDMI_RUN_ID"
RESUME_FROM_VAR = "HYBRIDMI_RESUME_FROM"  # the in-process runner's way to pass --resume-from
RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"  # KFP run UUIDs and hybridmi's local run ids
OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a Kubernetes object name (DNS subdomain): Secrets

# The KFP backend release k8s/kfp installs (an upstream tag; SDK patch releases get none); tests/k8s keeps the
# kfp SDK pin (2.17.*) in step.
KFP_BACKEND_VERSION = "2.17.0"

# The Kubeflow Trainer release k8s/trainer installs; TrainJobs are validated against its CRD (tests/task/trainjob).
TRAINER_VERSION = "v2.2.1"
TRAINER_RUNTIME = "torch-distributed"  # ClusterTrainingRuntime of k8s/trainer/runtimes: torchrun, PET_* env
NAMESPACE_VAR = "HYBRIDMI_NAMESPACE"  # the task pod's namespace (downward API): where it creates its TrainJob
# The task pod's name and uid (downward API): the owner of its TrainJob, deleted with the pod.
POD_NAME_VAR = "HYBRIDMI_POD_NAME"
POD_UID_VAR = "HYBRIDMI_POD_UID"
KEEP_TRAINJOB_VAR = "HYBRIDMI_KEEP_TRAINJOB"  # true: the task leaves its finished TrainJob (and pod logs) in place
SHM_SIZE = "2Gi"  # memory-backed /dev/shm of GPU pods: PyTorch workers and NCCL exchange tensors through it
