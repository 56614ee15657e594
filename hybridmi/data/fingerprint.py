"""A content fingerprint of a configured data source: what it decodes to, known without decoding it.

sha256 over the decode settings (source kind, decoder version; generator parameters for synthetic data)
and, for files, the relative name and sha256 of every source file, so the same CIFAR pickles or the same
archive give the same fingerprint on any machine and at any path, and any changed byte gives another.
Hashing reads each source file once (CIFAR-10's 178 MB in well under a second); decoding is what it saves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hybridmi.config import DataConfig
from hybridmi.data import sources, synthetic
from hybridmi.data.prepare import DECODER_VERSION, source_root
from hybridmi.runtime import sha256_file


def source_files(cfg: DataConfig) -> tuple[Path, list[Path]]:
    """(base, files): the files a source is decoded from and the folder their names are relative to."""
    root = source_root(cfg)
    if cfg.source in ("cifar10", "cifar100"):
        return root, sources.ensure_cifar(cfg.source, root, download=cfg.download)
    if sources.is_archive(root):
        return root, [root]  # its name is "."; renaming the archive changes nothing
    if root.is_dir():
        return root, sorted(p for p in root.rglob("*") if p.is_file())
    raise FileNotFoundError(f"data.root {root} is neither a directory nor a .tar/.tgz/.tar.gz archive")


def source_fingerprint(cfg: DataConfig) -> str:
    """64 hex characters identifying what ``cfg`` decodes to (see the module docstring)."""
    description: dict[str, Any] = {"kind": cfg.source, "decoder": DECODER_VERSION}
    if cfg.source == "synthetic":
        description.update(
            classes=cfg.synthetic_classes,
            train=cfg.synthetic_train,
            test=cfg.synthetic_test,
            seed=cfg.synthetic_seed,
            generator=synthetic.GENERATOR_VERSION,
        )
    else:
        base, files = source_files(cfg)
        description["files"] = [[p.relative_to(base).as_posix(), sha256_file(p)] for p in files]
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
