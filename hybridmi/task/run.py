"""What every task does around ``run_stage``: its config, the store from env, metrics, checkpoints.

Object storage is set by the environment only (``HYBRIDMI_STORE``), never by the config, which ends up in the
compiled pipeline and in every artifact.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from hybridmi.cluster import RUN_ID_VAR
from hybridmi.config import Config, config_to_text, parse_config_text
from hybridmi.errors import Preempted, UsageError
from hybridmi.parameters import CONFIG_PARAMETERS, config_field, resolve_config
from hybridmi.runtime import sigterm_handling
from hybridmi.stages import run_stage
from hybridmi.stages.common import read_sidecar
from hybridmi.task.dag import made_from, wiring
from hybridmi.task.failure import recording_failure
from hybridmi.task.identity import RunIdentity, task_identity
from hybridmi.task.launch import DISTRIBUTED_STAGES, launch_ranks, ranks_to_launch
from hybridmi.task.mirror import CHECKPOINT_STAGES, checkpoint_dir, open_mirror
from hybridmi.train.distributed import Ranks

log = logging.getLogger(__name__)

STORE_VAR = "HYBRIDMI_STORE"  # s3://bucket/prefix or a local directory; unset: no object storage
PREEMPTED_FLUSH_S = 20.0  # Kubernetes' default grace period is 30 s from SIGTERM to SIGKILL
STORE_STAGES = ("prepare", *CHECKPOINT_STAGES)  # stages that write to HYBRIDMI_STORE


@dataclass(frozen=True)
class TaskResult:
    """A stage's scalar metrics plus metadata for the KFP artifact of its first output."""

    metrics: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)


def open_task_store(env: Mapping[str, str]):
    """The artifact store named by HYBRIDMI_STORE (credentials from ``env``), or None when it is unset."""
    uri = env.get(STORE_VAR, "").strip()
    if not uri:
        return None
    from hybridmi.store import store_from_env

    return store_from_env(uri, env)


def _checkpoint_mirror(store, identity: RunIdentity, cfg: Config, stage: str, outputs: Mapping[str, Path]):
    directory = checkpoint_dir(stage, outputs)
    if store is None or directory is None:
        return None
    resume = identity.resume_from
    return open_mirror(
        store,
        key=identity.checkpoint_key(cfg, stage),
        run_id=identity.run_id,
        directory=directory,
        stage=stage,
        resume_from=(resume, identity.checkpoint_key(cfg, stage, run_id=resume)) if resume else None,
    )


def _prepare_with_store(store, cfg: Config, outputs: Mapping[str, Path], callbacks) -> tuple[dict, dict[str, Any]]:
    """Stage prepare with a store as a cache: fetch the data set published for this source, else decode and
    publish it (a failed fetch decodes, a failed publish only warns)."""
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
            return values, {
                "store_key": key,
                "store_reused": True,
                "decode_skipped": True,
                "dataset_checksum": read_sidecar(directory)["dataset_checksum"],
            }
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


def task_config(
    stage: str, config: str | Config, inputs: Mapping[str, str | Path], parameters: Mapping[str, str] = {}
) -> Config:
    """The config a task of ``stage`` runs with, validated once: ``config`` (YAML text or a Config), then the config
    parameters' fields as its inputs were made with (the model's α, the samples' count), then its own
    ``parameters`` (empty: keep). ValueError when two inputs were made with different values."""
    tree = config.model_dump(mode="json") if isinstance(config, Config) else parse_config_text(config)
    edges, made_with = wiring()[stage], {}
    for name, directory in inputs.items():
        path = Path(directory) / "config.yaml"
        if name not in edges or not path.is_file():
            continue
        upstream, their = made_from(edges[name][0]), parse_config_text(path.read_text(), where=str(path))
        for p in CONFIG_PARAMETERS:
            if p.stage in upstream:
                value = config_field(their, p.config_path)
                if made_with.setdefault(p.name, value) != value:
                    raise UsageError(
                        f"the inputs of {stage} were made with different {p.name}: {made_with[p.name]!r}, {value!r}"
                    )
    return resolve_config(tree, {**made_with, **{k: v for k, v in parameters.items() if v != ""}})


def run_task(
    stage: str,
    config: str | Config,
    *,
    inputs: Mapping[str, str | Path],
    outputs: Mapping[str, str | Path],
    parameters: Mapping[str, str] = {},
    env: Mapping[str, str] | None = None,
    resume_from: str | None = None,
) -> TaskResult:
    """Run ``stage`` on local artifact directories (name → directory) with the config ``task_config`` resolves.

    The run id comes from HYBRIDMI_RUN_ID; resume_from (default: HYBRIDMI_RESUME_FROM) names a run whose
    checkpoints a trainer continues when this run has none. Returns the stage's metrics and artifact metadata;
    a failure is recorded under HYBRIDMI_ERROR_DIR (when set) and re-raised.
    """
    env = os.environ if env is None else env
    with sigterm_handling(), recording_failure(stage, env):
        cfg = task_config(stage, config, inputs, parameters)
        ranks = Ranks.from_env(env)
        out_paths = {k: Path(v) for k, v in outputs.items()}
        if ranks.distributed and stage not in DISTRIBUTED_STAGES:
            raise UsageError(
                f"WORLD_SIZE={ranks.world_size}: stage {stage} runs in one process; only "
                f"{', '.join(DISTRIBUTED_STAGES)} trains on several ranks"
            )
        nproc = ranks_to_launch(stage, cfg, ranks)
        if nproc > 1:
            identity = task_identity(env, resume_from=resume_from)  # one run id for every rank
            result = launch_ranks(
                stage,
                config_to_text(cfg),
                inputs={k: Path(v) for k, v in inputs.items()},
                outputs=out_paths,
                env={**env, RUN_ID_VAR: identity.run_id},
                resume_from=resume_from,
                nproc=nproc,
            )
            return TaskResult(metrics=result["metrics"], metadata=result["metadata"])
        with _rank_outputs(ranks, out_paths) as out_paths:
            return _run(stage, cfg, ranks, inputs, out_paths, env, resume_from)


@contextlib.contextmanager
def _rank_outputs(ranks: Ranks, outputs: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """The task's output directories on rank 0; private scratch ones on the other ranks (they publish nothing)."""
    if ranks.main:
        yield outputs
        return
    from hybridmi.task.scratch import scratch_dir

    with scratch_dir("hybridmi-rank-") as scratch:
        yield {name: scratch.path / name for name in outputs}


def _run(
    stage: str,
    cfg: Config,
    ranks: Ranks,
    inputs: Mapping[str, str | Path],
    out_paths: dict[str, Path],
    env: Mapping[str, str],
    resume_from: str | None,
) -> TaskResult:
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
    try:
        with metrics.track():
            if stage == "prepare" and store is not None:
                values, metadata = _prepare_with_store(store, cfg, out_paths, callbacks)
            else:
                values = run_stage(stage, cfg, inputs, out_paths, callbacks=callbacks)
            if mirror is not None:
                mirror.flush()  # the final checkpoint, if an outage kept it local; a failure only warns
            metrics.record_eval(values)
    except Preempted:
        if mirror is not None:  # the checkpoint SIGTERM wrote, within the pod's grace period
            mirror.flush(timeout_s=PREEMPTED_FLUSH_S)
        raise
    finally:
        if mirror is not None:
            mirror.close(timeout_s=0)  # nothing of the mirror's left in the outputs about to be published
    return TaskResult(metrics=float_metrics(values), metadata=metadata)


def float_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """A stage's metrics as a flat dict of floats; ValueError naming a key whose value is not a number."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"metric {key}={value!r} is not a number")
        out[key] = float(value)
    return out
