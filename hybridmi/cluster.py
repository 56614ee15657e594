"""Cluster facts shared by the pipeline, the Kubernetes manifests and their tests (one home each).

GPU stages run on nodes labelled ``GPU_NODE_SELECTOR`` that carry the taint ``GPU_TOLERATION``
tolerates (``nvidia.com/gpu:NoSchedule``, what GPU node pools such as GKE's and EKS's set). The
kind cluster in ``k8s/kind/cluster.yaml`` labels and taints one worker the same way, so the same
compiled pipeline schedules there with empty accelerator parameters.
"""
from __future__ import annotations

# kfp.kubernetes.add_toleration(task, **GPU_TOLERATION)
GPU_TOLERATION: dict[str, str] = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# kfp.kubernetes.add_node_selector(task, label_key=..., label_value=...) for each item
GPU_NODE_SELECTOR: dict[str, str] = {"hybridmi.io/accelerator": "nvidia-gpu"}

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

# Kubeflow Pipelines backend release installed by k8s/kfp; the same as the kfp SDK pinned in pyproject.
KFP_VERSION = "2.17.3"
