"""Checkpoint mirroring for a training task: restore the newest checkpoint, mirror only finite ones.

``open_mirror`` compares the local checkpoint (its step read from the file itself) with the mirror's
pointer, brings the newer one into the checkpoint directory (``CheckpointSync.restore``) and returns the
callback that mirrors every later checkpoint, refusing any that holds a non-finite tensor: the trainer
checks before it writes; the mirror checks again, so it never replaces a good checkpoint with a bad one.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterator

import torch

from hybridmi.store import ArtifactStore, CheckpointSync
from hybridmi.train.checkpoint import latest_checkpoint

log = logging.getLogger(__name__)


def _load(path: Path) -> dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("step"), int):
        raise ValueError(f"{path} is not a hybridmi checkpoint (no integer 'step')")
    return payload


def local_checkpoint(directory: Path) -> tuple[Path, int] | None:
    """(path, step) of the checkpoint in ``directory``; None when there is none or it cannot be read."""
    path = latest_checkpoint(directory)
    if path is None:
        return None
    try:
        return path, _load(path)["step"]
    except Exception as exc:  # a truncated or foreign file: the mirror (or a fresh start) replaces it
        log.warning("ignoring unreadable local checkpoint %s: %s", path, exc)
        return None


def _tensors(value: Any, name: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, float):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{name}.{i}")


def first_nonfinite(path: Path) -> str | None:
    """'<name> is non-finite' for the first NaN/inf float tensor (or float) in checkpoint ``path``; None if all finite."""
    try:
        payload = _load(path)
    except Exception as exc:
        return f"it cannot be read ({exc})"
    for name, value in _tensors({k: v for k, v in payload.items() if k not in ("config", "rng")}, ""):
        if isinstance(value, float):
            bad = not math.isfinite(value)
        else:
            bad = (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all())
        if bad:
            return f"{name} is non-finite"
    return None


def open_mirror(store: ArtifactStore, *, key: str, run_id: str, directory: Path, stage: str = "",
                resume_from: tuple[str, str] | None = None) -> CheckpointSync:
    """The mirror callback for ``stage``'s checkpoints in ``directory``, after restoring the newer of local
    and mirrored.

    resume_from: (run id, its checkpoint key): when this run has no checkpoint of its own, continue
    that run's (FileNotFoundError when it has none either).
    """
    sync = CheckpointSync(store, key, run_id=run_id, accept=first_nonfinite)
    local = local_checkpoint(directory)
    restored = sync.restore(directory, local=local)
    if resume_from is not None and local is None and restored is None:
        run, source = resume_from
        if CheckpointSync(store, source, run_id=run).download_latest(directory) is None:
            raise FileNotFoundError(f"resume_from={run}: no {stage + ' ' if stage else ''}checkpoint under {source} "
                                    "(the run id and the config must match that run's)")
    return sync
