"""Self-describing checkpoints, written atomically and read with ``weights_only=True`` (a crafted file cannot run
code); ``last.pt.sha256`` lists the digests a valid ``last.pt`` may have, so a damaged file is never resumed."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from hybridmi.errors import HybridmiError
from hybridmi.runtime import atomic_path, sha256_file, write_json

FORMAT = 1
LATEST = "last.pt"
CHECKSUMS = "last.pt.sha256"


class DamagedCheckpoint(HybridmiError):
    """A checkpoint whose bytes are not the ones its trainer wrote."""


def save_checkpoint(directory: str | Path, *, kind: str, step: int, config: dict[str, Any], **state: Any) -> Path:
    """Write ``directory/last.pt`` = {format, kind, step, config, **state} atomically, and its digest."""
    path = Path(directory) / LATEST
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "kind": kind, "step": step, "config": config, **state}, tmp)
        record_checksum(tmp, as_path=path)
    return path


def record_checksum(path: Path, *, as_path: Path | None = None) -> None:
    """Record ``path``'s sha256 as a valid digest of checkpoint ``as_path`` (default ``path``), beside the previous."""
    sidecar = (as_path or path).with_name(CHECKSUMS)
    write_json(sidecar, {"sha256": [sha256_file(path), *_digests(sidecar)[:1]]})


def _digests(sidecar: Path) -> list[str]:
    try:
        return list(json.loads(sidecar.read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def verify_checkpoint(path: str | Path) -> None:
    """DamagedCheckpoint unless ``path``'s sha256 is one its trainer recorded."""
    path = Path(path)
    digests = _digests(path.with_name(CHECKSUMS))
    if not digests:
        raise DamagedCheckpoint(f"checkpoint {path} has no readable {CHECKSUMS}: delete both to start fresh")
    if sha256_file(path) not in digests:
        raise DamagedCheckpoint(
            f"checkpoint {path} is damaged (its sha256 is not the one written): delete it to start fresh"
        )


def sweep_temporary(directory: str | Path) -> None:
    """Remove the temporary files an interrupted save left in ``directory``."""
    for leftover in Path(directory).glob(".last.pt*.tmp"):
        leftover.unlink(missing_ok=True)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint to resume from, or None when there is none."""
    path = Path(directory) / LATEST
    return path if path.is_file() else None


def load_checkpoint(path: str | Path, *, kind: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint written by ``save_checkpoint`` for trainer ``kind``."""
    path = Path(path)
    verify_checkpoint(path)
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
