"""What every stage does with its outputs: resolved config, metrics JSON and a self-describing sidecar."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from hybridmi.config import Config, SamplingConfig, write_config
from hybridmi.errors import MissingInput
from hybridmi.eval.samples import read_index
from hybridmi.runtime import code_version, write_json
from hybridmi.train.callbacks import CallbackList

SIDECAR = "artifact.json"
UPSTREAM_KEYS = ("stage", "seconds", "config_hash", "checksum", "dataset_checksum", "code_version", "compute")


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
    directory: Path, cfg: Config, *, stage: str, metrics: dict | None = None, extra: dict | None = None
) -> dict[str, Any]:
    """Write config.yaml, metrics.json (if any) and artifact.json (written last) into an output directory."""
    write_config(cfg, directory)
    if metrics is not None:
        write_json(directory / "metrics.json", metrics)
    sidecar = {"stage": stage, "config_hash": cfg.hash(), "code_version": code_version(), "created_unix": time.time()}
    sidecar |= {"checksum": directory_checksum(directory), **(extra or {})}
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
        raise MissingInput(f"{directory} is not a finished artifact (no {SIDECAR})")
    return json.loads(path.read_text())


def upstream(inputs: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """Input name → its sidecar's stage, seconds and checksums, over the inputs' own carried ``upstream`` records."""
    found: dict[str, dict[str, Any]] = {}
    direct: dict[str, dict[str, Any]] = {}
    for name, directory in inputs.items():
        if (Path(directory) / SIDECAR).is_file():
            sidecar = read_sidecar(directory)
            found.update(sidecar.get("upstream", {}))
            direct[name] = {k: sidecar[k] for k in UPSTREAM_KEYS if k in sidecar}
    return {**found, **direct}


def sampler_settings(sampling: SamplingConfig) -> dict[str, Any]:
    """The sampling settings that fix a set of samples (seed and batch size fix the noise sequence)."""
    return sampling.model_dump(include={"seed", "steps", "eta", "spacing", "batch_size"})


def matching_samples(cfg: Config, directory: Path) -> dict[str, Any]:
    """The index of a samples artifact drawn with this config's sampling settings and count, else ValueError."""
    index = read_index(directory)
    expected = {**sampler_settings(cfg.sampling), "num_samples": cfg.sampling.num_samples}
    found = {**index["sampler"], "num_samples": index["count"]}
    differ = [f"{k} {found.get(k)!r} (config: {v!r})" for k, v in expected.items() if found.get(k) != v]
    if differ:
        raise ValueError(
            f"the samples in {directory} were drawn with other sampling settings: {', '.join(differ)}; "
            f"rerun the sample stage with this config"
        )
    return index
