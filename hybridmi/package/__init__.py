"""Exported model packages: one directory with the encoder, decoder and DDIM denoiser as torch.export programs, the
latent standardisation, the schedule, the config, a model card, checksums and a pure-torch ``load.py``.

``export_package`` writes one; ``load_package`` verifies and loads one with the same code the package carries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hybridmi.errors import MissingInput, UsageError
from hybridmi.package import loader
from hybridmi.package.export import export_package
from hybridmi.package.loader import ModelPackage

__all__ = ["ModelPackage", "describe_package", "export_package", "load_package"]


def load_package(path: str | Path, *, device: str | torch.device = "cpu") -> ModelPackage:
    """The package in directory ``path``, checksums verified first; UsageError in one line naming a bad file."""
    path = Path(path)
    if not path.is_dir():
        raise MissingInput(f"model package {path} does not exist")
    try:
        return loader.load(path, device=device)
    except loader.PackageError as exc:
        raise UsageError(str(exc)) from None


def describe_package(path: str | Path) -> dict[str, Any]:
    """Metadata of a verified package for its pipeline artifact: format, digest of its checksums, config hash."""
    path = Path(path)
    try:
        loader.verify(path)
    except loader.PackageError as exc:
        raise UsageError(str(exc)) from None
    manifest = json.loads((path / loader.MANIFEST).read_text())
    return {
        "format": f"{manifest['kind']}/{manifest['format']}",
        "checksums_sha256": loader.sha256(path / loader.CHECKSUMS),
        "config_hash": manifest["config_hash"],
        "code_version": manifest["code_version"],
    }
