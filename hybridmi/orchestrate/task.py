"""What a pipeline task does around ``run_stage``: config from text, store from env, metrics, checkpoints.

Every KFP component body (``components/``) and the in-process runner call ``run_task``, so a stage
behaves the same in a subprocess, a container, a cluster pod and this process. This module imports
no kfp: output artifacts are duck-typed (``.path``, ``.metadata``, ``log_metric``...).

Object storage is optional and configured by the environment only (never by the config, which ends
up in the compiled pipeline and in every artifact): ``HYBRIDMI_STORE=s3://bucket/prefix`` (or a
local path) plus the endpoint/credential variables that ``hybridmi.store.store_from_env`` reads.
With a store, a stage that writes to it (prepare, the trainers) first probes read and write access
(one-line credentials error before any work); the prepared data set is published under
``datasets/<checksum>`` and found again by its source's fingerprint, so a later run on any machine
downloads it instead of decoding (``decode_skipped`` in the task's metadata); and trainer checkpoints
are mirrored under ``checkpoints/<run id>/<config hash>/<stage>`` (``identity.py``), so a retried pod
of the same run resumes from the newer of its local and its mirrored checkpoint, a new run starts
fresh, and ``resume_from`` continues another run's checkpoints. A mirror outage never stops training
(``hybridmi.store.checkpoints``).

Distributed training: the train task with ``train.ranks`` > 1 (or 'auto' on a multi-GPU node) runs
itself again on that many ranks through torchrun (``launch.py``) and returns rank 0's result. In a
process that is one rank of a launch (torchrun's WORLD_SIZE > 1, here or in a multi-node job) only
rank 0 probes the store, mirrors checkpoints and reports metrics; the other ranks only train.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from hybridmi.cluster import RUN_ID_VAR
from hybridmi.config import Config, config_from_dict
from hybridmi.orchestrate.identity import RunIdentity, task_identity
from hybridmi.orchestrate.launch import DISTRIBUTED_STAGES, launch_ranks, ranks_to_launch
from hybridmi.runtime import setup_logging, write_json
from hybridmi.stages import run_stage, stage_module
from hybridmi.stages.common import read_sidecar
from hybridmi.train.distributed import Ranks

log = logging.getLogger(__name__)

STORE_VAR = "HYBRIDMI_STORE"  # s3://bucket/prefix or a local directory; unset: no object storage
ERROR_DIR_VAR = "HYBRIDMI_ERROR_DIR"  # where a failing task leaves <stage>.json for the local runner
CHECKPOINT_STAGES = ("train", "ddim")  # trainers whose checkpoints outlive a pod
STORE_STAGES = ("prepare", *CHECKPOINT_STAGES)  # stages that write to HYBRIDMI_STORE


@dataclass(frozen=True)
class TaskResult:
    """A stage's scalar metrics plus metadata for the KFP artifact of its first output."""

    metrics: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)


def config_from_text(text: str) -> Config:
    """The Config a pipeline parameter holds: YAML (or JSON) text of a config tree; empty = defaults."""
    tree = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(tree, dict):
        raise ValueError(f"config parameter must hold a mapping, got {type(tree).__name__}")
    return config_from_dict(tree)


def config_to_text(cfg: Config) -> str:
    """The YAML text of a resolved config (what ``config_from_text`` reads back to an equal Config)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def open_task_store(env: Mapping[str, str]):
    """The artifact store named by HYBRIDMI_STORE (credentials from ``env``), or None when it is unset."""
    uri = env.get(STORE_VAR, "").strip()
    if not uri:
        return None
    from hybridmi.store import store_from_env

    return store_from_env(uri, env)


def checkpoint_dir(stage: str, outputs: Mapping[str, Path]) -> Path | None:
    """Where stage ``stage`` keeps its resumable checkpoint (None for stages that do not train)."""
    if stage not in CHECKPOINT_STAGES:
        return None
    module = stage_module(stage)
    return Path(outputs[module.OUTPUTS[0]]) / getattr(module, "CHECKPOINTS", "")


def _checkpoint_mirror(store, identity: RunIdentity, cfg: Config, stage: str, outputs: Mapping[str, Path]):
    directory = checkpoint_dir(stage, outputs)
    if store is None or directory is None:
        return None
    from hybridmi.orchestrate.mirror import open_mirror

    resume = identity.resume_from
    return open_mirror(store, key=identity.checkpoint_key(cfg, stage), run_id=identity.run_id, directory=directory,
                       stage=stage, resume_from=(resume, identity.checkpoint_key(cfg, stage, run_id=resume)) if resume else None)


def _prepare_with_store(store, cfg: Config, outputs: Mapping[str, Path], callbacks) -> tuple[dict, dict[str, Any]]:
    """Stage prepare with a store: fetch the data set published for this source, else decode and publish it.

    The store is a cache here: a copy that cannot be fetched is decoded instead, and one that cannot be
    published leaves a warning (the task's own output is the data set the next stages read).
    """
    from hybridmi.data.fingerprint import source_fingerprint
    from hybridmi.stages import prepare
    from hybridmi.store import StoreError, find_by_source, publish_dataset, record_source

    directory = Path(outputs["dataset"])
    fingerprint = source_fingerprint(cfg.data)
    key = find_by_source(store, fingerprint)
    if key is not None and directory.exists() and any(directory.iterdir()):
        key = None  # an earlier prepare's output is here (a rerun into the same directory): decode over it
    if key is not None:
        try:
            store.get_dir(key, directory)
        except StoreError as exc:  # a cache that fails is a cache miss
            log.warning("could not fetch the published data set %s (%s); decoding the source", key, exc)
        else:
            values = prepare.finish(cfg, directory)
            log.info("data set fetched from %s (source fingerprint %s): decode skipped", key, fingerprint)
            return values, {"store_key": key, "store_reused": True, "decode_skipped": True,
                            "dataset_checksum": read_sidecar(directory)["dataset_checksum"]}
    values = run_stage("prepare", cfg, {}, outputs, callbacks=callbacks)
    checksum = read_sidecar(directory)["dataset_checksum"]
    metadata: dict[str, Any] = {"decode_skipped": False, "dataset_checksum": checksum}
    try:
        published = publish_dataset(store, directory, checksum)
        record_source(store, fingerprint, checksum)
    except StoreError as exc:
        log.warning("the data set was prepared but could not be published to %s: %s", store.uri, exc)
        return values, metadata
    return values, {"store_key": published.key, "store_reused": published.reused, **metadata}


def _stage_metrics(cfg: Config, stage: str, identity: RunIdentity):
    from hybridmi.metrics import StageMetrics

    return StageMetrics.from_config(cfg, stage=stage, run_id=identity.metrics_run_id(cfg))


def _record_failure(stage: str, exc: BaseException, env: Mapping[str, str]) -> None:
    directory = env.get(ERROR_DIR_VAR, "").strip()
    if directory:
        message = f"{type(exc).__name__}: {exc}".strip()
        write_json(Path(directory) / f"{stage}.json", {"stage": stage, "error": message, "time_unix": time.time()})


@contextlib.contextmanager
def recording_failure(stage: str, env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Record any exception of the block under HYBRIDMI_ERROR_DIR (for the local runner's message), re-raise it."""
    try:
        yield
    except BaseException as exc:
        _record_failure(stage, exc, os.environ if env is None else env)
        raise


def run_task(
    stage: str,
    config: str | Config,
    *,
    inputs: Mapping[str, str | Path],
    outputs: Mapping[str, str | Path],
    env: Mapping[str, str] | None = None,
    resume_from: str | None = None,
) -> TaskResult:
    """Run ``stage`` on local artifact directories the way every pipeline runner does.

    config: the resolved config (YAML text or a Config); inputs/outputs: artifact name → directory.
    The run id comes from HYBRIDMI_RUN_ID; resume_from (default: HYBRIDMI_RESUME_FROM) names a run
    whose checkpoints a trainer continues when this run has none of its own.
    Returns the stage's metrics (floats) and artifact metadata (data set store key, reuse flag).
    On failure the error is recorded under HYBRIDMI_ERROR_DIR (when set) and re-raised.
    """
    env = os.environ if env is None else env
    with recording_failure(stage, env):
        cfg = config if isinstance(config, Config) else config_from_text(config)
        ranks = Ranks.from_env(env)
        out_paths = {k: Path(v) for k, v in outputs.items()}
        if ranks.distributed and stage not in DISTRIBUTED_STAGES:
            raise ValueError(f"WORLD_SIZE={ranks.world_size}: stage {stage} runs in one process; only "
                             f"{', '.join(DISTRIBUTED_STAGES)} trains on several ranks")
        nproc = ranks_to_launch(stage, cfg, ranks)
        if nproc > 1:
            identity = task_identity(env, resume_from=resume_from)  # one run id for every rank
            result = launch_ranks(stage, config_to_text(cfg), inputs={k: Path(v) for k, v in inputs.items()},
                                  outputs=out_paths, env={**env, RUN_ID_VAR: identity.run_id},
                                  resume_from=resume_from, nproc=nproc)
            return TaskResult(metrics=result["metrics"], metadata=result["metadata"])
        with _rank_outputs(ranks, out_paths) as out_paths:
            return _run(stage, cfg, ranks, inputs, out_paths, env, resume_from)


@contextlib.contextmanager
def _rank_outputs(ranks: Ranks, outputs: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """The task's output directories on rank 0; private scratch ones on the other ranks (they publish nothing)."""
    if ranks.main:
        yield outputs
        return
    from hybridmi.orchestrate.scratch import scratch_dir

    with scratch_dir("hybridmi-rank-") as scratch:
        yield {name: scratch.path / name for name in outputs}


def _run(stage: str, cfg: Config, ranks: Ranks, inputs: Mapping[str, str | Path], out_paths: dict[str, Path],
         env: Mapping[str, str], resume_from: str | None) -> TaskResult:
    if not ranks.main:  # the other ranks of a launch only train: no store, mirror or metrics
        return TaskResult(metrics=float_metrics(run_stage(stage, cfg, inputs, out_paths)))
    identity = task_identity(env, resume_from=resume_from)
    store = open_task_store(env)
    if store is not None and stage in STORE_STAGES:
        store.check_access(write=True)  # before any work: a bad secret fails here, in one line
    mirror = _checkpoint_mirror(store, identity, cfg, stage, out_paths)
    metrics = _stage_metrics(cfg, stage, identity)
    callbacks = [metrics, *([mirror] if mirror is not None else [])]
    metadata: dict[str, Any] = {}
    with metrics.track():
        if stage == "prepare" and store is not None:
            values, metadata = _prepare_with_store(store, cfg, out_paths, callbacks)
        else:
            values = run_stage(stage, cfg, inputs, out_paths, callbacks=callbacks)
        if mirror is not None:
            mirror.flush()  # the final checkpoint, if an outage kept it local; a failure only warns
        metrics.record_eval(values)
    return TaskResult(metrics=float_metrics(values), metadata=metadata)


def float_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """A stage's metrics as a flat dict of floats; ValueError naming a key whose value is not a number."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"metric {key}={value!r} is not a number")
        out[key] = float(value)
    return out


def log_metrics(artifact: Any, values: Mapping[str, float], *, metadata: Mapping[str, Any] = ()) -> None:
    """Log ``values`` on a KFP Metrics artifact (shown in the UI) and write them as JSON at its path.

    A Metrics artifact whose path is an existing directory (a stage's own metrics output) keeps its
    files; otherwise the JSON document is the artifact's file, so every runner has something to upload.
    """
    for key, value in values.items():
        artifact.log_metric(key, value)
    for key, value in dict(metadata).items():
        artifact.metadata[key] = value
    path = Path(artifact.path)
    if not path.is_dir():
        write_json(path, dict(values))


def log_confusion(artifact: Any, metrics_dir: str | Path) -> bool:
    """Log ``<metrics_dir>/confusion.json`` ({classes, confusion_matrix}) on a ClassificationMetrics artifact.

    Returns False when the stage wrote no confusion matrix. The artifact's file gets the same JSON.
    """
    source = Path(metrics_dir) / "confusion.json"
    if not source.is_file():
        return False
    doc = json.loads(source.read_text())
    artifact.log_confusion_matrix([str(c) for c in doc["classes"]], [[int(v) for v in row] for row in doc["confusion_matrix"]])
    write_json(Path(artifact.path), doc)
    return True


def setup_task_logging() -> None:
    """Logging for a task process (an entry point: components call it once)."""
    setup_logging(os.environ.get("HYBRIDMI_LOG_LEVEL", "INFO"))
