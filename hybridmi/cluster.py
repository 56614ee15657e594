"""Cluster facts shared by the pipelines, the runners, the Kubernetes manifests and their tests (one home each).

Scheduling defaults fit a stock GPU cluster: GPU stages request ``nvidia.com/gpu`` (the NVIDIA
device plugin's resource, which alone steers them to GPU nodes) and tolerate the
``nvidia.com/gpu:NoSchedule`` taint GPU node pools usually carry; no node selector. A cluster that
labels its GPU nodes passes the label as the ``gpu_node_selector`` parameter, as the kind cluster
(``k8s/kind/cluster.yaml``, ``GPU_NODE_LABELS``) and scripts/kind-e2e.sh do.
"""

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

# Run identity. The KFP API server labels every pod of a run with its run id (backend
# src/apiserver/template/v2_template.go: SetPodMetadataLabels(pipeline/runid, RunID)); stage pods
# get it as RUN_ID_VAR through the downward API. Local runners set RUN_ID_VAR themselves.
RUN_ID_LABEL = "pipeline/runid"
RUN_ID_VAR = "HYBRIDMI_RUN_ID"
RESUME_FROM_VAR = "HYBRIDMI_RESUME_FROM"  # the in-process runner's way to pass --resume-from
RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"  # KFP run UUIDs and hybridmi's local run ids
OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a Kubernetes object name (DNS subdomain): Secrets

# Kubeflow Pipelines backend release that k8s/kfp installs: a tag that exists upstream
# (github.com/kubeflow/pipelines, tags up to 2.17.0; SDK patch releases such as 2.17.3 get no
# backend tag). The kfp SDK pinned in pyproject (2.17.*) compiles the IR this backend runs;
# tests/k8s keeps the minor versions in step.
KFP_BACKEND_VERSION = "2.17.0"

# Kubeflow Trainer release that k8s/trainer installs (github.com/kubeflow/trainer tags: ..., v2.2.0,
# v2.2.1, v2.3.0-rc.*; v2.2.1 is the newest release that is not a candidate). The TrainJob the
# multi-node train step creates is validated against this tag's CRD (tests/task/trainjob/trainer_crd);
# tests/k8s keeps the pins in step with it.
TRAINER_VERSION = "v2.2.1"
TRAINER_RUNTIME = "torch-distributed"  # ClusterTrainingRuntime of k8s/trainer/runtimes: torchrun, PET_* env
# The service accounts KFP runs pipeline pods as (kubeflow/pipelines backend: DefaultPipelineRunnerServiceAccount):
# standalone KFP in namespace kubeflow, multi-user Kubeflow in each profile namespace. k8s/trainer/rbac
# lets the first create TrainJobs; the second gets the same ClusterRole through a RoleBinding (k8s/README.md).
PIPELINE_RUNNER_SA = "pipeline-runner"
PROFILE_RUNNER_SA = "default-editor"
NAMESPACE_VAR = "HYBRIDMI_NAMESPACE"  # the task pod's namespace (downward API): where it creates its TrainJob
# The task pod's name and uid (downward API metadata.name, metadata.uid): the owner of its TrainJob, which
# Kubernetes' garbage collector deletes with the pod.
POD_NAME_VAR = "HYBRIDMI_POD_NAME"
POD_UID_VAR = "HYBRIDMI_POD_UID"
KEEP_TRAINJOB_VAR = (
    "HYBRIDMI_KEEP_TRAINJOB"  # true/1/yes: the task leaves its finished TrainJob (and pod logs) in place
)
SHM_SIZE = "2Gi"  # memory-backed /dev/shm of GPU pods: PyTorch workers and NCCL exchange tensors through it
