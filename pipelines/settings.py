"""Task settings, one helper each: image, resources, storage secret, run id, GPU scheduling, /dev/shm, timeout."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from kfp import kubernetes
from kfp.dsl import PipelineTask

from components.image import DEFAULT_IMAGE
from hybridmi.cluster import (
    NAMESPACE_VAR,
    OBJECT_NAME,
    POD_NAME_VAR,
    POD_UID_VAR,
    RUN_ID_LABEL,
    RUN_ID_VAR,
    SHM_SIZE,
    STORE_SECRET_KEYS,
)
from hybridmi.errors import UsageError
from hybridmi.stages import STAGE_NAMES
from pipelines.parameters import check_image

GPU_STAGES = frozenset({"train", "latents", "ddim", "sample", "fid"})
# Argo retries a GPU task whose container failed; a pod lost with its node is not retried: resubmit with --resume-from.
GPU_RETRIES = 2
CONTROL = "control"  # the timeout key of tradeoff
HOUR = 3600
DEFAULT_TIMEOUTS_S: dict[str, int] = {
    **{stage: 6 * HOUR for stage in STAGE_NAMES},
    "train": 24 * HOUR,
    "ddim": 24 * HOUR,
    CONTROL: HOUR,
}
SWEEP_PARALLELISM = 2  # α values trained at once (each holds gpu_count GPUs)
# The multi-node train task outlives its TrainJob's deadline by this much (node scheduling, image pulls, the model).
TRAINJOB_MARGIN_S = 30 * 60
# The multi-node train task's own pod only copies and polls (the task_* parameters size the TrainJob's nodes).
TRAINJOB_TASK_CPU = ("500m", "2")
TRAINJOB_TASK_MEMORY = ("1Gi", "4Gi")


@dataclass(frozen=True)
class Limits:
    """Compile-time task settings: pod timeout per stage (seconds; ``control`` for tradeoff), sweep parallelism,
    the image pull Secret (``""``: none) and the default of the ``image`` run parameter."""

    timeouts_s: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS_S))
    sweep_parallelism: int = SWEEP_PARALLELISM
    image_pull_secret: str = ""
    default_image: str = DEFAULT_IMAGE

    def __post_init__(self) -> None:
        unknown = sorted(set(self.timeouts_s) - set(DEFAULT_TIMEOUTS_S))
        if unknown:
            raise UsageError(
                f"timeout for unknown stage(s) {', '.join(unknown)}; stages: {', '.join(DEFAULT_TIMEOUTS_S)}"
            )
        for stage, seconds in self.timeouts_s.items():
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
                raise UsageError(f"timeout of {stage} must be a positive number of seconds, got {seconds!r}")
        if (
            isinstance(self.sweep_parallelism, bool)
            or not isinstance(self.sweep_parallelism, int)
            or self.sweep_parallelism < 1
        ):
            raise UsageError(f"sweep parallelism must be a positive integer, got {self.sweep_parallelism!r}")
        if self.image_pull_secret and not OBJECT_NAME.fullmatch(self.image_pull_secret):
            raise UsageError(f"image pull secret {self.image_pull_secret!r} is not a Kubernetes object name")
        check_image(self.default_image)

    def timeout_s(self, stage: str) -> int:
        return self.timeouts_s.get(stage, DEFAULT_TIMEOUTS_S[stage])

    def with_timeouts(self, seconds: Mapping[str, int]) -> "Limits":
        """These limits with some timeouts replaced (key ``all``: every stage and control)."""
        every = {name: seconds["all"] for name in DEFAULT_TIMEOUTS_S} if "all" in seconds else {}
        return replace(
            self, timeouts_s={**self.timeouts_s, **every, **{k: v for k, v in seconds.items() if k != "all"}}
        )


@dataclass(frozen=True)
class TaskSettings:
    """The run parameters (pipeline channels) every task is configured with, plus the compile-time limits."""

    channels: Mapping[str, Any]
    limits: Limits

    def __getitem__(self, name: str) -> Any:
        return self.channels[name]


def run_on_image(task: PipelineTask, settings: TaskSettings, *, timeout_key: str) -> PipelineTask:
    """The ``image`` parameter as the task's image (pulled with the compile-time pull secret, if any), bounded by its timeout."""
    task.set_container_image(settings["image"])
    if settings.limits.image_pull_secret:
        kubernetes.set_image_pull_secrets(task, [settings.limits.image_pull_secret])
    return kubernetes.set_timeout(task, settings.limits.timeout_s(timeout_key))


def request_resources(task: PipelineTask, settings: TaskSettings) -> PipelineTask:
    """CPU and memory requests and limits of the stage pod."""
    task.set_cpu_request(settings["task_cpu_request"]).set_cpu_limit(settings["task_cpu_limit"])
    return task.set_memory_request(settings["task_memory_request"]).set_memory_limit(settings["task_memory_limit"])


def use_store_secret(task: PipelineTask, settings: TaskSettings) -> PipelineTask:
    """The object-storage address and credentials as env vars from a Secret (optional: absent = no store)."""
    return kubernetes.use_secret_as_env(
        task, secret_name=settings["store_secret"], secret_key_to_env=STORE_SECRET_KEYS, optional=True
    )


def expose_run_id(task: PipelineTask) -> PipelineTask:
    """The KFP run id (the pod label the API server sets) as HYBRIDMI_RUN_ID: checkpoints and metrics are keyed by it."""
    return kubernetes.use_field_path_as_env(task, env_name=RUN_ID_VAR, field_path=f"metadata.labels['{RUN_ID_LABEL}']")


def request_gpu(task: PipelineTask, settings: TaskSettings) -> PipelineTask:
    """``gpu_type`` x ``gpu_count``, the node selector and tolerations parameters (empty: none), retries."""
    task.set_accelerator_type(settings["gpu_type"]).set_accelerator_limit(settings["gpu_count"])
    kubernetes.add_node_selector_json(task, settings["gpu_node_selector"])
    kubernetes.add_toleration_json(task, settings["gpu_tolerations"])
    return task.set_retry(num_retries=GPU_RETRIES, backoff_duration="30s", backoff_factor=2.0)


def mount_shm(task: PipelineTask) -> PipelineTask:
    """A memory-backed emptyDir at /dev/shm (the container default of 64 MiB starves data loaders)."""
    return kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=SHM_SIZE
    )


def control_task(task: PipelineTask, settings: TaskSettings) -> PipelineTask:
    """Settings of a task that runs no stage (tradeoff): image and timeout."""
    return run_on_image(task, settings, timeout_key=CONTROL)


def stage_task(task: PipelineTask, settings: TaskSettings) -> PipelineTask:
    """Every setting a stage task gets, plus the GPU ones for GPU stages; the stage is the component's name."""
    stage = task.component_spec.name
    if stage not in STAGE_NAMES:
        raise UsageError(f"stage_task got component {stage!r}, not a stage ({', '.join(STAGE_NAMES)})")
    run_on_image(task, settings, timeout_key=stage)
    request_resources(task, settings)
    use_store_secret(task, settings)
    expose_run_id(task)
    if stage in GPU_STAGES:
        request_gpu(task, settings)
        mount_shm(task)
    return task


def trainjob_task(task: PipelineTask, settings: TaskSettings) -> PipelineTask:
    """The multi-node train task (components/trainjob.py): a small pod without GPUs (its TrainJob's nodes hold
    them) that knows its namespace, outlives the TrainJob's deadline and is retried like the GPU stages."""
    run_on_image(task, settings, timeout_key="train")
    kubernetes.set_timeout(task, settings.limits.timeout_s("train") + TRAINJOB_MARGIN_S)  # replaces run_on_image's
    task.set_cpu_request(TRAINJOB_TASK_CPU[0]).set_cpu_limit(TRAINJOB_TASK_CPU[1])
    task.set_memory_request(TRAINJOB_TASK_MEMORY[0]).set_memory_limit(TRAINJOB_TASK_MEMORY[1])
    use_store_secret(task, settings)
    expose_run_id(task)
    kubernetes.use_field_path_as_env(task, env_name=NAMESPACE_VAR, field_path="metadata.namespace")
    # The task's own pod owns its TrainJob: Kubernetes garbage-collects the TrainJob with the pod.
    kubernetes.use_field_path_as_env(task, env_name=POD_NAME_VAR, field_path="metadata.name")
    kubernetes.use_field_path_as_env(task, env_name=POD_UID_VAR, field_path="metadata.uid")
    task.set_display_name("train (TrainJob)")
    return task.set_retry(num_retries=GPU_RETRIES, backoff_duration="30s", backoff_factor=2.0)
