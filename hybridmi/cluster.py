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

# Kubeflow Pipelines backend release installed by k8s/kfp; the same as the kfp SDK pinned in pyproject.
KFP_VERSION = "2.17.3"
