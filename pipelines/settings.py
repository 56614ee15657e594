"""Task settings, one helper each: GPU request, pod resources, memory-backed /dev/shm, the storage secret.

Every value that differs between clusters comes in as a pipeline parameter (see
hybridmi/orchestrate/parameters.py); kfp.local ignores all of these with a warning, so the same
compiled pipeline runs on a laptop, on a GPU-less kind cluster (empty ``gpu_count``) and on GPU nodes.
"""
from __future__ import annotations

from dataclasses import dataclass

from kfp import kubernetes
from kfp.dsl import PipelineTask

from hybridmi.cluster import GPU_NODE_SELECTOR, GPU_TOLERATION, STORE_SECRET_KEYS

SHM_SIZE = "2Gi"  # PyTorch worker processes and NCCL exchange tensors through /dev/shm
GPU_RETRIES = 2  # a preempted GPU pod is retried; it resumes from the checkpoint in object storage



@dataclass(frozen=True)
class Cluster:
    """The pipeline's task parameters (pipeline channels) that every stage task is configured with."""

    gpu_type: object
    gpu_count: object
    cpu_request: object
    memory_request: object
    store_secret: object


def request_gpu(task: PipelineTask, cluster: Cluster) -> PipelineTask:
    """nvidia.com/gpu (or whatever ``gpu_type`` names) x ``gpu_count``, on tainted, labelled GPU nodes."""
    task.set_accelerator_type(cluster.gpu_type).set_accelerator_limit(cluster.gpu_count)
    kubernetes.add_toleration(task, **GPU_TOLERATION)
    for key, value in GPU_NODE_SELECTOR.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    task.set_retry(num_retries=GPU_RETRIES, backoff_duration="30s", backoff_factor=2.0)
    return task


def request_resources(task: PipelineTask, cluster: Cluster) -> PipelineTask:
    """CPU and memory requests of the stage pod."""
    return task.set_cpu_request(cluster.cpu_request).set_memory_request(cluster.memory_request)


def mount_shm(task: PipelineTask) -> PipelineTask:
    """A memory-backed emptyDir at /dev/shm (the container default of 64 MiB starves data loaders)."""
    return kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=SHM_SIZE)


def use_store_secret(task: PipelineTask, cluster: Cluster) -> PipelineTask:
    """The object-storage address and credentials as env vars from a Secret (optional: absent = no store)."""
    return kubernetes.use_secret_as_env(task, secret_name=cluster.store_secret, secret_key_to_env=STORE_SECRET_KEYS,
                                        optional=True)


def stage_task(task: PipelineTask, cluster: Cluster, *, gpu: bool = False) -> PipelineTask:
    """Apply the settings every stage task gets (plus the GPU ones for GPU stages)."""
    request_resources(task, cluster)
    use_store_secret(task, cluster)
    if gpu:
        request_gpu(task, cluster)
        mount_shm(task)
    return task
