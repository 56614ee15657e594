"""Checkpoint mirroring for a training task: where its checkpoints are, restore the newest, mirror only finite ones."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from hybridmi.errors import MissingInput, UsageError
from hybridmi.stages import stage_module
from hybridmi.store import ArtifactStore, CheckpointSync
from hybridmi.train.checkpoint import latest_checkpoint, verify_checkpoint
from hybridmi.train.guard import first_nonfinite as first_nonfinite_tensor

log = logging.getLogger(__name__)

CHECKPOINT_STAGES = ("train", "ddim")  # trainers whose checkpoints outlive a pod


def checkpoint_dir(stage: str, outputs: Mapping[str, Path]) -> Path | None:
    """Where stage ``stage`` keeps its resumable checkpoint (None for stages that do not train)."""
    if stage not in CHECKPOINT_STAGES:
        return None
    module = stage_module(stage)
    return Path(outputs[module.OUTPUTS[0]]) / getattr(module, "CHECKPOINTS", "")


def _load(path: Path) -> dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # data only: no code from a bucket
    if not isinstance(payload, dict) or not isinstance(payload.get("step"), int):
        raise UsageError(f"{path} is not a hybridmi checkpoint (no integer 'step')")
    return payload


def local_checkpoint(directory: Path) -> tuple[Path, int] | None:
    """(path, step) of the checkpoint in ``directory``; None when there is none or it cannot be read."""
    path = latest_checkpoint(directory)
    if path is None:
        return None
    try:
        verify_checkpoint(path)
        return path, _load(path)["step"]
    except Exception as exc:  # damaged, truncated or foreign: the mirror replaces it, else the trainer refuses it
        log.warning("ignoring unreadable local checkpoint %s: %s", path, exc)
        return None


def first_nonfinite(path: Path) -> str | None:
    """'<name> is non-finite' for the first NaN/inf tensor of checkpoint ``path`` (its config and RNG state
    aside); 'it cannot be read (...)' for a file that does not load; None when it may be mirrored."""
    try:
        payload = _load(path)
    except Exception as exc:
        return f"it cannot be read ({exc})"
    bad = first_nonfinite_tensor({k: v for k, v in payload.items() if k not in ("config", "rng")})
    return None if bad is None else f"{bad} is non-finite"


def open_mirror(
    store: ArtifactStore,
    *,
    key: str,
    run_id: str,
    directory: Path,
    stage: str = "",
    resume_from: tuple[str, str] | None = None,
) -> CheckpointSync:
    """The mirror callback for ``stage``'s checkpoints in ``directory``, after restoring the newer of local
    and mirrored.

    resume_from: (run id, its checkpoint key): when this run has no checkpoint of its own, continue that
    run's; a stage that run never reached starts fresh; MissingInput when that run left no checkpoint at all.
    """
    sync = CheckpointSync(store, key, run_id=run_id, accept=first_nonfinite)
    local = local_checkpoint(directory)
    restored = sync.restore(directory, local=local)
    if resume_from is not None and local is None and restored is None:
        run, source = resume_from
        if CheckpointSync(store, source, run_id=run).download_latest(directory) is None:
            run_prefix = source.rsplit("/", 2)[0] + "/"  # checkpoints/<run id>/<training hash>/<stage>
            if not store.list(run_prefix):
                raise MissingInput(
                    f"resume_from={run}: no checkpoint of that run under {run_prefix} "
                    "(the run id and the config must match that run's)"
                )
            log.warning(
                "resume_from=%s: that run stopped before %s checkpointed; it starts fresh", run, stage or source
            )
    return sync
