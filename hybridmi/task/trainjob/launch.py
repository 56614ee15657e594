"""The multi-node train step: publish the data set, run the run's TrainJob to its end, fetch the model it published.

What the ``train_trainjob`` component (components/trainjob.py) calls in its pod. Object storage is
the hand-over: every node reads the data set from ``datasets/<checksum>`` and rank 0 publishes the
model under ``runs/<run id>/<config hash>/train/model``, both in the store the storage Secret names
(``HYBRIDMI_STORE``, an ``s3://`` store every node can reach). The TrainJob is named after the run and
the config (``trainjob_name``), so a retried task finds it: a running or finished one is waited for,
a failed one (or one being deleted) is replaced once it is gone (its nodes resume from the run's
mirrored checkpoints), and a model already published is fetched without training again. A SIGTERM
(the run terminated, the pod's deadline) deletes the TrainJob so its nodes do not hold GPUs for a run
that is gone. Once the TrainJob has finished and the task has read its outcome (the model in the
store, or the reason it failed), the task deletes it, pods and logs included, unless
HYBRIDMI_KEEP_TRAINJOB is true; the task's pod owns it besides (HYBRIDMI_POD_NAME/HYBRIDMI_POD_UID),
so Kubernetes deletes a TrainJob the task could not with the pod.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from hybridmi.cluster import KEEP_TRAINJOB_VAR
from hybridmi.config import Config, config_from_text, config_to_text
from hybridmi.stages.common import read_sidecar
from hybridmi.task.failure import recording_failure
from hybridmi.task.identity import task_identity
from hybridmi.task.run import float_metrics, open_task_store
from hybridmi.task.trainjob.api import (
    ApiUnavailable,
    TrainJobApiError,
    TrainJobs,
    kube_api_client,
    task_namespace,
    task_pod,
)
from hybridmi.task.trainjob.manifest import TrainJobRequest, render_trainjob, trainjob_name
from hybridmi.task.trainjob.status import FAILED, TrainJobFailed, TrainJobState, trainjob_state, wait_for_trainjob

log = logging.getLogger(__name__)

REPLACE_WAIT_S = 600.0  # how long a failed TrainJob of an earlier attempt may take to go (its pods terminating)


class TrainStepTerminated(RuntimeError):
    """The task received SIGTERM while its TrainJob ran; the TrainJob was deleted."""


class ModelNotPublished(RuntimeError):
    """The TrainJob completed but its rank 0 left no model in the store."""


@dataclass(frozen=True)
class NodeSettings:
    """The run parameters that shape the TrainJob's nodes (pipelines/parameters.py), as the run passes them."""

    image: str
    nodes: int
    gpu_type: str = "nvidia.com/gpu"
    gpu_count: str = "1"  # GPUs (= processes) per node; "" or gpu_type "": no GPU request, one process per node
    cpu_request: str = "1"
    cpu_limit: str = "16"
    memory_request: str = "4Gi"
    memory_limit: str = "32Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    image_pull_secret: str = ""
    store_secret: str = "hybridmi-store"
    deadline_s: int = 24 * 3600

    def __post_init__(self) -> None:
        if self.gpu_count and not (self.gpu_count.isdigit() and int(self.gpu_count) > 0):
            raise ValueError(f"gpu_count={self.gpu_count!r} is not a positive integer (or empty for no GPU)")

    @property
    def gpus_per_node(self) -> int:
        """GPUs (and processes) per node; 0 when gpu_type or gpu_count is empty."""
        return int(self.gpu_count) if self.gpu_type and self.gpu_count else 0


def node_settings(
    *,
    image: str,
    train_nodes: str,
    deadline_s: int,
    gpu_type: str,
    gpu_count: str,
    cpu_request: str,
    cpu_limit: str,
    memory_request: str,
    memory_limit: str,
    node_selector: Mapping[str, str],
    tolerations: Sequence[Mapping[str, Any]],
    image_pull_secret: str,
    store_secret: str,
) -> NodeSettings:
    """NodeSettings from the run parameters as the component receives them (train_nodes as text); ValueError naming one."""
    if not str(train_nodes).strip().isdigit() or int(train_nodes) < 1:
        raise ValueError(f"train_nodes={train_nodes!r} is not a positive integer")
    return NodeSettings(
        image=image,
        nodes=int(train_nodes),
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        cpu_request=cpu_request,
        cpu_limit=cpu_limit,
        memory_request=memory_request,
        memory_limit=memory_limit,
        node_selector=dict(node_selector),
        tolerations=list(tolerations),
        image_pull_secret=image_pull_secret,
        store_secret=store_secret,
        deadline_s=int(deadline_s),
    )


def model_key(run_id: str, cfg: Config) -> str:
    """Where the TrainJob's rank 0 publishes the model: ``runs/<run id>/<config hash>/train/model``."""
    return f"runs/{run_id}/{cfg.hash()}/train/model"


@contextlib.contextmanager
def deleted_on_sigterm(jobs: TrainJobs, name: str) -> Iterator[None]:
    """While the block runs, SIGTERM deletes the TrainJob ``name`` and ends the block with TrainStepTerminated."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise TrainStepTerminated(f"the train step was terminated (signal {signum}) while TrainJob {name} ran")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except TrainStepTerminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        log.warning("terminated: deleting TrainJob %s so that its nodes stop", name)
        jobs.delete(name)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no environment variable: 1/true/yes or 0/false/no (empty: no); ValueError naming anything else."""
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "0", "false", "no", "1", "true", "yes"):
        raise ValueError(f"{name}={env[name]!r} is not a boolean (use true or false)")
    return raw in ("1", "true", "yes")


@contextlib.contextmanager
def deleted_once_finished(jobs: TrainJobs, name: str, *, keep: bool = False) -> Iterator[None]:
    """The block waits for the TrainJob ``name`` and reads its outcome; delete the TrainJob when that block ends
    with it finished: returning (Complete, model found), TrainJobFailed or ModelNotPublished. Any other error
    (the API unreachable, SIGTERM: deleted already) leaves it. ``keep``: never delete. A deletion the API
    refuses is logged, not raised: the outcome stands, and the task's pod owns the TrainJob."""
    try:
        yield
    except (TrainJobFailed, ModelNotPublished):
        _delete_finished(jobs, name, keep=keep)
        raise
    _delete_finished(jobs, name, keep=keep)


def _delete_finished(jobs: TrainJobs, name: str, *, keep: bool) -> None:
    if keep:
        log.info(
            "keeping the finished TrainJob %s (%s): kubectl -n %s delete trainjob %s",
            name,
            KEEP_TRAINJOB_VAR,
            jobs.namespace,
            name,
        )
        return
    try:
        if jobs.delete(name):
            log.info("deleted the finished TrainJob %s and its pods (%s=true keeps them)", name, KEEP_TRAINJOB_VAR)
    except (TrainJobApiError, ApiUnavailable) as exc:
        log.warning(
            "could not delete the finished TrainJob %s (%s); it goes with the task's pod if that owns it, "
            "else: kubectl -n %s delete trainjob %s",
            name,
            exc,
            jobs.namespace,
            name,
        )


def run_trainjob(
    jobs: TrainJobs,
    body: Mapping[str, Any],
    *,
    poll_s: float = 10.0,
    unreachable_s: float = 300.0,
    replace_wait_s: float = REPLACE_WAIT_S,
) -> TrainJobState:
    """Create the TrainJob ``body`` (or take over the one of that name), wait for its end; its final state.

    An existing Failed one (an earlier attempt's) or one being deleted is waited out and created again;
    any other is waited for. Raises TrainJobFailed (with the TrainJob's reason), KubeUnreachable,
    TrainJobApiError, TrainStepTerminated.
    """
    name = body["metadata"]["name"]
    trainer = body["spec"]["trainer"]
    with deleted_on_sigterm(jobs, name):
        existing = jobs.get(name)
        earlier = trainjob_state(existing) if existing is not None else None
        if existing is not None and (
            earlier.phase == FAILED or (existing.get("metadata") or {}).get("deletionTimestamp")
        ):
            log.warning(
                "TrainJob %s of an earlier attempt %s; creating it again once it is gone: its nodes resume "
                "from the run's checkpoints",
                name,
                f"failed ({earlier.reason})" if earlier.phase == FAILED else "is being deleted",
            )
            jobs.delete(name, wait_s=replace_wait_s, poll_s=min(poll_s, 5.0))
            existing = None
        if existing is None and jobs.create(body) is not None:
            limits = trainer["resourcesPerNode"]["limits"]
            log.info(
                "created TrainJob %s in namespace %s: %d node(s) x %d process(es), image %s, limits %s",
                name,
                jobs.namespace,
                trainer["numNodes"],
                trainer["numProcPerNode"],
                trainer["image"],
                json.dumps(limits, sort_keys=True),
            )
        else:
            log.info("TrainJob %s exists already (an earlier attempt of this task created it): waiting for it", name)
        state = wait_for_trainjob(lambda: jobs.get(name), name=name, poll_s=poll_s, unreachable_s=unreachable_s)
    return state


def _dataset_uri(store, dataset_dir: Path) -> str:
    """Publish the prepared data set under its checksum (a no-op when the prepare task did) and return its URI."""
    from hybridmi.store import dataset_key, publish_dataset

    checksum = read_sidecar(dataset_dir)["dataset_checksum"]
    publish_dataset(store, dataset_dir, checksum)
    return f"{store.uri}/{dataset_key(checksum)}"


def _model_metrics(model_dir: Path) -> dict[str, float]:
    path = model_dir / "metrics.json"
    return float_metrics(json.loads(path.read_text())) if path.is_file() else {}


def run_trainjob_task(
    config: str | Config,
    *,
    dataset_dir: str | Path,
    model_dir: str | Path,
    nodes: NodeSettings,
    env: Mapping[str, str] | None = None,
    resume_from: str | None = None,
    api_client: Any = None,
    poll_s: float = 10.0,
    unreachable_s: float = 300.0,
) -> dict[str, float]:
    """Train on ``nodes.nodes`` nodes through a TrainJob and leave its model in ``model_dir``; the model's metrics.

    config: the resolved config (YAML text or Config); dataset_dir: the prepared data set (KFP input);
    env: HYBRIDMI_RUN_ID, HYBRIDMI_STORE + storage credentials, HYBRIDMI_NAMESPACE, HYBRIDMI_POD_NAME and
    HYBRIDMI_POD_UID (the TrainJob's owner), HYBRIDMI_KEEP_TRAINJOB (default os.environ);
    api_client: a kubernetes ApiClient (default: in-cluster service account, else the kubeconfig).
    Failures are recorded as stage ``train`` under HYBRIDMI_ERROR_DIR (when set) and re-raised.
    """
    env = os.environ if env is None else env
    with recording_failure("train", env):
        cfg = config if isinstance(config, Config) else config_from_text(config)
        identity = task_identity(env, resume_from=resume_from)
        store = open_task_store(env)
        if store is None or not store.uri.startswith("s3://"):
            raise ValueError(
                f"a train step on {nodes.nodes} nodes hands data and model over through object storage every "
                f"node reaches: HYBRIDMI_STORE must be an s3:// store (the storage Secret {nodes.store_secret!r}), "
                f"got {getattr(store, 'uri', None) or 'none'}"
            )
        keep = env_flag(env, KEEP_TRAINJOB_VAR)
        key = model_key(identity.run_id, cfg)
        model_uri = f"{store.uri}/{key}"
        if store.exists(key):
            log.info(
                "the model of this run is in the store already (%s, published by an earlier attempt's TrainJob)",
                model_uri,
            )
        else:
            name = trainjob_name(identity.run_id, cfg.hash())
            jobs = TrainJobs(api_client if api_client is not None else kube_api_client(env), task_namespace(env))
            request = TrainJobRequest(
                name=name,
                namespace=jobs.namespace,
                image=nodes.image,
                nodes=nodes.nodes,
                gpus_per_node=nodes.gpus_per_node,
                config_text=config_to_text(cfg),
                config_hash=cfg.hash(),
                run_id=identity.run_id,
                dataset_uri=_dataset_uri(store, Path(dataset_dir)),
                model_uri=model_uri,
                store_secret=nodes.store_secret,
                deadline_s=nodes.deadline_s,
                gpu_resource=nodes.gpu_type,
                cpu_request=nodes.cpu_request,
                cpu_limit=nodes.cpu_limit,
                memory_request=nodes.memory_request,
                memory_limit=nodes.memory_limit,
                node_selector=nodes.node_selector,
                tolerations=nodes.tolerations,
                image_pull_secret=nodes.image_pull_secret,
                resume_from=identity.resume_from,
                owner_pod=task_pod(env),
            )
            with deleted_once_finished(jobs, name, keep=keep):
                run_trainjob(jobs, render_trainjob(request), poll_s=poll_s, unreachable_s=unreachable_s)
                if not store.exists(key):
                    logs = (
                        f"kubectl -n {jobs.namespace} logs -l jobset.sigs.k8s.io/jobset-name={name}"
                        if keep
                        else f"its pods' logs go with it unless the task runs with {KEEP_TRAINJOB_VAR}=true"
                    )
                    raise ModelNotPublished(
                        f"TrainJob {name} completed but no model was published at {model_uri} "
                        f"(rank 0 publishes it; {logs})"
                    )
        store.get_dir(key, Path(model_dir))
        log.info("model fetched from %s", model_uri)
        return _model_metrics(Path(model_dir))
