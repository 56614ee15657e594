"""Decode a configured source once into a prepared data set directory, reusing a decode cache.

The cache lives under ``DataConfig.cache_dir`` in a folder named by the source's identity (what it is
and which files: path, size and mtime for an archive; the parameters for synthetic data), so a
second prepare of an unchanged source loads uint8 tensors (checksum-verified) instead of decoding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from hybridmi.config import DataConfig
from hybridmi.data import sources, synthetic
from hybridmi.data.prepared import (
    DATASET_JSON,
    IMAGE_SHAPE,
    SPLIT_NAMES,
    Split,
    combined_checksum,
    load_split,
    save_split,
)
from hybridmi.runtime import write_json

log = logging.getLogger(__name__)

DATASET_FORMAT = "hybridmi.dataset/1"
DECODER_VERSION = 1  # bump when decoding changes, so old cache entries are not reused
TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "folder": "class folders", "synthetic": "synthetic"}


def source_root(cfg: DataConfig) -> Path | None:
    """Where the source lives: cfg.root, or ``<cache_dir>/cifar`` for CIFAR without a root; None for synthetic."""
    if cfg.source == "synthetic":
        return None
    if cfg.root:
        return Path(cfg.root).expanduser().resolve()
    if cfg.source == "folder":
        raise ValueError("data.root is required when data.source is 'folder'")
    return (Path(cfg.cache_dir).expanduser() / "cifar").resolve()


def _file_stamp(path: Path, relative_to: Path) -> list[Any]:
    stat = path.stat()
    return [path.relative_to(relative_to).as_posix(), stat.st_size, stat.st_mtime_ns]


def source_identity(cfg: DataConfig) -> dict[str, Any]:
    """What identifies the decoded content without decoding: kind, location, file sizes and mtimes, parameters."""
    root = source_root(cfg)
    identity: dict[str, Any] = {"kind": cfg.source, "decoder": DECODER_VERSION}
    if cfg.source == "synthetic":
        identity.update(
            classes=cfg.synthetic_classes,
            train=cfg.synthetic_train,
            test=cfg.synthetic_test,
            seed=cfg.synthetic_seed,
            generator=synthetic.GENERATOR_VERSION,
        )
    elif cfg.source in ("cifar10", "cifar100"):
        files = sources.ensure_cifar(cfg.source, root, download=cfg.download)
        identity.update(root=str(root), files=[_file_stamp(p, root) for p in files])
    elif sources.is_archive(root):
        identity.update(root=str(root), files=[_file_stamp(root, root.parent)])
    elif root.is_dir():
        stamps = [_file_stamp(p, root) for p in sorted(root.rglob("*")) if p.is_file()]
        identity.update(root=str(root), files_sha256=hashlib.sha256(json.dumps(stamps).encode()).hexdigest())
    else:
        raise FileNotFoundError(f"data.root {root} is neither a directory nor a .tar/.tgz/.tar.gz archive")
    return identity


def cache_key(identity: dict[str, Any]) -> str:
    """16 hex characters of sha256 over the identity's canonical JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def decode_source(cfg: DataConfig) -> tuple[Split, Split]:
    """Decode the configured source into (train, test) splits (no cache)."""
    if cfg.source == "synthetic":
        return synthetic.make_synthetic(
            num_classes=cfg.synthetic_classes,
            n_train=cfg.synthetic_train,
            n_test=cfg.synthetic_test,
            seed=cfg.synthetic_seed,
        )
    if cfg.source in ("cifar10", "cifar100"):
        return sources.load_cifar(cfg.source, source_root(cfg), download=cfg.download)
    return sources.load_class_folders(source_root(cfg))


def _load_cached(folder: Path) -> tuple[Split, Split] | None:
    paths = [folder / f"{name}.pt" for name in SPLIT_NAMES]
    if not all(p.is_file() for p in paths):
        return None
    try:
        train, test = (load_split(p) for p in paths)
    except ValueError as exc:  # a damaged cache entry is rebuilt, not fatal
        log.warning("ignoring damaged decode cache %s: %s", folder, exc)
        return None
    return train, test


def cached_decode(cfg: DataConfig) -> tuple[Split, Split, dict[str, Any]]:
    """(train, test, cache info) from the decode cache, decoding and filling it on a miss."""
    identity = source_identity(cfg)
    key = cache_key(identity)
    folder = Path(cfg.cache_dir).expanduser() / f"{cfg.source}-{key}"
    start = time.monotonic()
    cached = _load_cached(folder)
    if cached is not None:
        log.info("decode cache hit %s", folder)
        return *cached, {"hit": True, "key": key, "dir": str(folder), "seconds": time.monotonic() - start}
    train, test = decode_source(cfg)
    seconds = time.monotonic() - start
    log.info("decoded %s (%d train, %d test images) in %.1f s", TITLES[cfg.source], len(train), len(test), seconds)
    for name, split in zip(SPLIT_NAMES, (train, test)):
        save_split(split, folder / f"{name}.pt")
    write_json(folder / "identity.json", identity)
    return train, test, {"hit": False, "key": key, "dir": str(folder), "seconds": seconds}


def _describe(cfg: DataConfig) -> dict[str, Any]:
    """The source as recorded in dataset.json: stable for the same source (no mtimes, no cache paths)."""
    description: dict[str, Any] = {"kind": cfg.source, "title": TITLES[cfg.source]}
    if cfg.source == "synthetic":
        description.update(
            classes=cfg.synthetic_classes,
            train=cfg.synthetic_train,
            test=cfg.synthetic_test,
            seed=cfg.synthetic_seed,
            generator=synthetic.GENERATOR_VERSION,
        )
    else:
        description["root"] = str(source_root(cfg))
    return description


def _class_counts(split: Split) -> list[int]:
    return torch.bincount(split.labels, minlength=len(split.classes)).tolist()


def prepare_dataset(cfg: DataConfig, out_dir: str | Path) -> dict[str, Any]:
    """Write out_dir/{train.pt, test.pt, dataset.json}; returns dataset.json's content plus a 'cache' entry.

    The 'cache' entry (hit, key, dir, seconds) is returned for logging and metrics but not written, so
    dataset.json depends only on the source and its content.
    """
    out_dir = Path(out_dir)
    train, test, cache = cached_decode(cfg)
    if train.classes != test.classes:
        raise ValueError(f"{TITLES[cfg.source]}: train and test class lists differ")
    for name, split in zip(SPLIT_NAMES, (train, test)):
        save_split(split, out_dir / f"{name}.pt")
    checksums = {"train": train.checksum, "test": test.checksum}
    meta = {
        "format": DATASET_FORMAT,
        "source": _describe(cfg),
        "classes": train.classes,
        "image_shape": list(IMAGE_SHAPE),
        "counts": {"train": len(train), "test": len(test)},
        "class_counts": {"train": _class_counts(train), "test": _class_counts(test)},
        "checksums": checksums,
        "checksum": combined_checksum(checksums),
    }
    write_json(out_dir / DATASET_JSON, meta)
    return {**meta, "cache": cache}
