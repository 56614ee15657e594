"""Self-describing training checkpoints: dicts loaded by key, written atomically.

A checkpoint is data, never code: it holds tensors, numbers, strings and containers of them, and is
read with ``torch.load(weights_only=True)``, so a crafted file from a shared bucket cannot run anything.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from hybridmi.runtime import atomic_torch_save

FORMAT = 1
LATEST = "last.pt"


def save_checkpoint(directory: str | Path, *, kind: str, step: int, config: dict[str, Any], **state: Any) -> Path:
    """Write ``directory/last.pt`` = {format, kind, step, config, **state} via temp file + rename.

    A crash mid-write leaves the previous checkpoint intact.
    """
    payload = {"format": FORMAT, "kind": kind, "step": step, "config": config, **state}
    return atomic_torch_save(payload, Path(directory) / LATEST)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint to resume from, or None when there is none."""
    path = Path(directory) / LATEST
    return path if path.is_file() else None


def load_checkpoint(path: str | Path, *, kind: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint written by ``save_checkpoint`` for trainer ``kind``."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a hybridmi checkpoint of format {FORMAT}")
    if payload.get("kind") != kind:
        raise ValueError(f"{path} is a {payload.get('kind')!r} checkpoint, expected {kind!r}")
    return payload


def check_resumable(saved: dict[str, Any], current: dict[str, Any], *, sections: tuple[str, ...]) -> None:
    """Refuse to resume when a config section that shapes the run changed since the checkpoint."""
    for section in sections:
        if saved.get(section) != current.get(section):
            raise ValueError(
                f"checkpoint was written with a different '{section}' config; "
                f"resume with the same settings or start in a fresh output directory"
            )
