"""The multi-node train step: publish the data set, run the run's TrainJob to its end, fetch the model it published."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from hybridmi.cluster import KEEP_TRAINJOB_VAR
from hybridmi.config import Config, config_from_text, config_to_text
from hybridmi.errors import HybridmiError, TaskFailed, UsageError
from hybridmi.stages.common import read_sidecar
from hybridmi.task.failure import recording_failure
from hybridmi.task.identity import task_identity
from hybridmi.task.run import float_metrics, open_task_store
from hybridmi.task.trainjob.api import TrainJobs, kube_api_client, task_namespace, task_pod
from hybridmi.task.trainjob.manifest import NodeSettings, TrainJobRequest, render_trainjob, trainjob_name
from hybridmi.task.trainjob.status import FAILED, TrainJobFailed, TrainJobState, trainjob_state, wait_for_trainjob

log = logging.getLogger(__name__)

REPLACE_WAIT_S = 600.0  # how long a failed TrainJob of an earlier attempt may take to go (its pods terminating)


class TrainStepTerminated(TaskFailed):
    """The task received SIGTERM while its TrainJob ran; the TrainJob was deleted."""


class ModelNotPublished(TaskFailed):
    """The TrainJob completed but its rank 0 left no model in the store."""


def model_key(run_id: str, cfg: Config) -> str:
    """Where the TrainJob's rank 0 publishes the model: ``runs/<run id>/<config hash>/train/model``."""
    return f"runs/{run_id}/{cfg.hash()}/train/model"


@contextlib.contextmanager
def deleted_on_sigterm(jobs: TrainJobs, name: str) -> Iterator[Callable[[], None]]:
    """While the block runs, SIGTERM deletes the TrainJob ``name`` and ends the block with TrainStepTerminated.

    Yields ``check``, which raises it again once SIGTERM has arrived: the handler's own raise can land inside code
    that swallows exceptions (a logging handler's ``handleError``), so the wait loop calls ``check`` every poll."""
    received: list[int] = []

    def check() -> None:
        if received:
            raise TrainStepTerminated(f"the train step was terminated (signal {received[0]}) while TrainJob {name} ran")

    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield check
        return

    def handler(signum: int, _frame: Any) -> None:
        received.append(signum)
        check()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield check
    except TrainStepTerminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        log.warning("terminated: deleting TrainJob %s so that its nodes stop", name)
        jobs.delete(name)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no environment variable: 1/true/yes or 0/false/no (empty: no); UsageError naming anything else."""
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "0", "false", "no", "1", "true", "yes"):
        raise UsageError(f"{name}={env[name]!r} is not a boolean (use true or false)")
    return raw in ("1", "true", "yes")


@contextlib.contextmanager
def deleted_once_finished(jobs: TrainJobs, name: str, *, keep: bool = False) -> Iterator[None]:
    """Delete the TrainJob when the block ends with it finished (returning, TrainJobFailed, ModelNotPublished);
    other errors (API unreachable; SIGTERM deleted it already) leave it. A refused deletion is only logged."""
    try:
        yield
    except (TrainJobFailed, ModelNotPublished):
        _delete_finished(jobs, name, keep=keep)
        raise
    _delete_finished(jobs, name, keep=keep)


def _delete_finished(jobs: TrainJobs, name: str, *, keep: bool) -> None:
    by_hand = f"kubectl -n {jobs.namespace} delete trainjob {name}"
    if keep:
        log.info("keeping the finished TrainJob %s (%s): %s", name, KEEP_TRAINJOB_VAR, by_hand)
        return
    try:
        if jobs.delete(name):
            log.info("deleted the finished TrainJob %s and its pods (%s=true keeps them)", name, KEEP_TRAINJOB_VAR)
    except HybridmiError as exc:  # TrainJobApiError, ApiUnavailable
        log.warning(
            "could not delete the finished TrainJob %s (%s); it goes with its pod, else: %s", name, exc, by_hand
        )


def run_trainjob(
    jobs: TrainJobs, body: Mapping[str, Any], *, poll_s: float = 10.0, unreachable_s: float = 300.0
) -> TrainJobState:
    """Create the TrainJob ``body`` (or take over the one of that name), wait for its end; its final state."""
    name = body["metadata"]["name"]
    trainer = body["spec"]["trainer"]
    with deleted_on_sigterm(jobs, name) as check:
        existing = jobs.get(name)
        earlier = trainjob_state(existing) if existing is not None else None
        if existing is not None and (
            earlier.phase == FAILED or (existing.get("metadata") or {}).get("deletionTimestamp")
        ):
            how = f"failed ({earlier.reason})" if earlier.phase == FAILED else "is being deleted"
            log.warning("TrainJob %s of an earlier attempt %s; creating it again once it is gone", name, how)
            jobs.delete(name, wait_s=REPLACE_WAIT_S, poll_s=min(poll_s, 5.0))
            existing = None
        if existing is None and jobs.create(body) is not None:
            shape = f"{trainer['numNodes']} node(s) x {trainer['numProcPerNode']} process(es), image {trainer['image']}"
            limits = json.dumps(trainer["resourcesPerNode"]["limits"], sort_keys=True)
            log.info("created TrainJob %s in namespace %s: %s, limits %s", name, jobs.namespace, shape, limits)
        else:
            log.info("TrainJob %s exists already (an earlier attempt of this task created it): waiting for it", name)

        def get() -> Mapping[str, Any] | None:
            check()
            return jobs.get(name)

        return wait_for_trainjob(get, name=name, poll_s=poll_s, unreachable_s=unreachable_s)


def _dataset_uri(store, dataset_dir: Path) -> str:
    """Publish the prepared data set under its checksum (a no-op when the prepare task did) and return its URI."""
    from hybridmi.store import dataset_key, publish_dataset

    checksum = read_sidecar(dataset_dir)["dataset_checksum"]
    publish_dataset(store, dataset_dir, checksum)
    return f"{store.uri}/{dataset_key(checksum)}"


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
    """Train on ``nodes.nodes`` nodes through a TrainJob and leave its model in ``model_dir``; the model's metrics."""
    env = os.environ if env is None else env
    with recording_failure("train", env):
        cfg = config if isinstance(config, Config) else config_from_text(config)
        identity = task_identity(env, resume_from=resume_from)
        store = open_task_store(env)
        if store is None or not store.uri.startswith("s3://"):
            raise UsageError(
                f"a train step on {nodes.nodes} nodes hands data and model over through object storage every "
                f"node reaches: HYBRIDMI_STORE must be an s3:// store (the storage Secret {nodes.store_secret!r}), "
                f"got {getattr(store, 'uri', None) or 'none'}"
            )
        keep = env_flag(env, KEEP_TRAINJOB_VAR)
        key = model_key(identity.run_id, cfg)
        model_uri = f"{store.uri}/{key}"
        if store.exists(key):
            log.info("the model of this run is in the store already (%s, from an earlier attempt)", model_uri)
        else:
            name = trainjob_name(identity.run_id, cfg.hash())
            jobs = TrainJobs(api_client if api_client is not None else kube_api_client(env), task_namespace(env))
            request = TrainJobRequest(
                name=name,
                namespace=jobs.namespace,
                settings=nodes,
                config_text=config_to_text(cfg),
                config_hash=cfg.hash(),
                run_id=identity.run_id,
                dataset_uri=_dataset_uri(store, Path(dataset_dir)),
                model_uri=model_uri,
                resume_from=identity.resume_from,
                owner_pod=task_pod(env),
            )
            with deleted_once_finished(jobs, name, keep=keep):
                run_trainjob(jobs, render_trainjob(request), poll_s=poll_s, unreachable_s=unreachable_s)
                if not store.exists(key):
                    gone = f"its pods' logs go with it unless the task runs with {KEEP_TRAINJOB_VAR}=true"
                    logs = (
                        f"kubectl -n {jobs.namespace} logs -l jobset.sigs.k8s.io/jobset-name={name}" if keep else gone
                    )
                    missing = f"TrainJob {name} completed but no model was published at {model_uri}"
                    raise ModelNotPublished(f"{missing} (rank 0 publishes it; {logs})")
        store.get_dir(key, Path(model_dir))
        log.info("model fetched from %s", model_uri)
        metrics = Path(model_dir) / "metrics.json"
        return float_metrics(json.loads(metrics.read_text())) if metrics.is_file() else {}
