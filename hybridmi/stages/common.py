"""What every stage does with its outputs: resolved config, metrics JSON and a self-describing sidecar."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Iterable

from hybridmi.config import Config, write_config
from hybridmi.runtime import code_version, write_json
from hybridmi.train.callbacks import CallbackList

SIDECAR = "artifact.json"


def directory_checksum(directory: Path) -> str:
    """sha256 over (relative path, bytes) of every file except the sidecar, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != SIDECAR):
        digest.update(str(path.relative_to(directory)).encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def finish_output(
    directory: Path, cfg: Config, *, stage: str, metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write config.yaml, metrics.json (if any) and artifact.json (written last) into an output directory."""
    write_config(cfg, directory)
    if metrics is not None:
        write_json(directory / "metrics.json", metrics)
    sidecar = {
        "stage": stage,
        "config_hash": cfg.hash(),
        "code_version": code_version(),
        "created_unix": time.time(),
        "checksum": directory_checksum(directory),
        **(extra or {}),
    }
    write_json(directory / SIDECAR, sidecar)
    return sidecar


def report_eval(callbacks: Iterable[object], metrics: dict[str, float], *, step: int = 0) -> None:
    """Hand every evaluation result to the callbacks (e.g. Prometheus gauges)."""
    events = CallbackList(callbacks)
    for name, value in metrics.items():
        events.on_eval(name, value, step)


def read_sidecar(directory: Path) -> dict[str, Any]:
    """The artifact.json of an artifact directory; a clear error when it is not a finished artifact."""
    path = Path(directory) / SIDECAR
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a finished artifact (no {SIDECAR})")
    return json.loads(path.read_text())
