"""Decode a configured source once into a prepared data set directory, reusing a decode cache."""

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
from hybridmi.data.prepared import DATASET_JSON, SPLIT_NAMES, Split, combined_checksum, load_split, save_split
from hybridmi.errors import MissingInput, UsageError
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
        raise UsageError("data.root is required when data.source is 'folder'")
    return (Path(cfg.cache_dir).expanduser() / "cifar").resolve()


def synthetic_parameters(cfg: DataConfig) -> dict[str, Any]:
    """What a synthetic source decodes to: its counts, seed and generator version."""
    counts = dict(classes=cfg.synthetic_classes, train=cfg.synthetic_train, test=cfg.synthetic_test)
    return {**counts, "seed": cfg.synthetic_seed, "generator": synthetic.GENERATOR_VERSION}


def source_files(cfg: DataConfig) -> tuple[Path, list[Path]]:
    """(base, files): the files a non-synthetic source is decoded from and the folder their names are relative to."""
    root = source_root(cfg)
    if cfg.source in ("cifar10", "cifar100"):
        return root, sources.ensure_cifar(cfg.source, root, download=cfg.download)
    if sources.is_archive(root):
        return root, [root]  # its name is "."; renaming the archive changes no fingerprint
    if root.is_dir():
        return root, sorted(p for p in root.rglob("*") if p.is_file())
    raise MissingInput(f"data.root {root} is neither a directory nor a .tar/.tgz/.tar.gz archive")


def source_identity(cfg: DataConfig) -> dict[str, Any]:
    """What identifies the decoded content without reading it: kind, location, file sizes and mtimes, parameters."""
    identity: dict[str, Any] = {"kind": cfg.source, "decoder": DECODER_VERSION}
    if cfg.source == "synthetic":
        return {**identity, **synthetic_parameters(cfg)}
    base, files = source_files(cfg)
    stamps = [[p.relative_to(base).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    files_sha256 = hashlib.sha256(json.dumps(stamps).encode()).hexdigest()
    return {**identity, "root": str(source_root(cfg)), "files_sha256": files_sha256}


def _load_cached(folder: Path) -> tuple[Split, Split] | None:
    paths = [folder / f"{name}.pt" for name in SPLIT_NAMES]
    if not all(p.is_file() for p in paths):
        return None
    try:
        return load_split(paths[0]), load_split(paths[1])
    except ValueError as exc:  # a damaged cache entry is rebuilt, not fatal
        log.warning("ignoring damaged decode cache %s: %s", folder, exc)
        return None


def cached_decode(cfg: DataConfig) -> tuple[Split, Split, dict[str, Any]]:
    """(train, test, cache info) from the decode cache, decoding and filling it on a miss."""
    identity = source_identity(cfg)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cfg.cache_dir).expanduser() / f"{cfg.source}-{key}"
    start = time.monotonic()
    if (cached := _load_cached(folder)) is not None:
        log.info("decode cache hit %s", folder)
        return *cached, {"hit": True, "key": key, "dir": str(folder), "seconds": time.monotonic() - start}
    if cfg.source == "synthetic":
        p = synthetic_parameters(cfg)
        train, test = synthetic.make_synthetic(
            num_classes=p["classes"], n_train=p["train"], n_test=p["test"], seed=p["seed"]
        )
    elif cfg.source in ("cifar10", "cifar100"):
        train, test = sources.load_cifar(cfg.source, source_root(cfg), download=cfg.download)
    else:
        train, test = sources.load_class_folders(source_root(cfg))
    seconds = time.monotonic() - start
    log.info("decoded %s (%d train, %d test images) in %.1f s", TITLES[cfg.source], len(train), len(test), seconds)
    for name, split in zip(SPLIT_NAMES, (train, test)):
        save_split(split, folder / f"{name}.pt")
    write_json(folder / "identity.json", identity)
    return train, test, {"hit": False, "key": key, "dir": str(folder), "seconds": seconds}


def prepare_dataset(cfg: DataConfig, out_dir: str | Path) -> dict[str, Any]:
    """Write out_dir/{train.pt, test.pt, dataset.json}; returns dataset.json's content plus a 'cache' entry."""
    out_dir = Path(out_dir)
    train, test, cache = cached_decode(cfg)
    if train.classes != test.classes:
        raise UsageError(f"{TITLES[cfg.source]}: train and test class lists differ")
    splits = dict(zip(SPLIT_NAMES, (train, test)))
    for name, split in splits.items():
        save_split(split, out_dir / f"{name}.pt")
    checksums = {name: split.checksum for name, split in splits.items()}
    # the source, stable for the same source (no mtimes, no cache paths)
    source = synthetic_parameters(cfg) if cfg.source == "synthetic" else {"root": str(source_root(cfg))}
    meta = {
        "format": DATASET_FORMAT,
        "source": {"kind": cfg.source, "title": TITLES[cfg.source], **source},
        "classes": train.classes,
        "image_shape": list(train.images.shape[1:]),
        "counts": {name: len(split) for name, split in splits.items()},
        "class_counts": {n: torch.bincount(s.labels, minlength=len(s.classes)).tolist() for n, s in splits.items()},
        "checksums": checksums,
        "checksum": combined_checksum(checksums),
    }
    write_json(out_dir / DATASET_JSON, meta)
    return {**meta, "cache": cache}
