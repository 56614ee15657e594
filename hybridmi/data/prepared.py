"""Prepared (decoded) data: uint8 image tensors + labels + class names, verified by a content checksum."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from hybridmi.errors import MissingInput, UsageError
from hybridmi.runtime import atomic_torch_save

SPLIT_FORMAT = "hybridmi.split/1"
DATASET_JSON = "dataset.json"
SPLIT_NAMES = ("train", "test")
IMAGE_SHAPE = (3, 32, 32)


def content_checksum(images: torch.Tensor, labels: torch.Tensor) -> str:
    """sha256 (hex) over the raw bytes of images (N,3,32,32) uint8 then labels (N,) int64."""
    digest = hashlib.sha256()
    for tensor in (images, labels):
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def combined_checksum(checksums: dict[str, str]) -> str:
    """sha256 (hex) over ``name:checksum`` lines in sorted name order: one key for a whole data set."""
    blob = "".join(f"{name}:{checksums[name]}\n" for name in sorted(checksums))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Split:
    """One decoded split: images uint8 (N,3,32,32), labels int64 (N,) in [0, len(classes)), checksum hex."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    checksum: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def validate_arrays(images: torch.Tensor, labels: torch.Tensor, classes: list[str], *, where: str) -> None:
    """ValueError (naming ``where``) unless the tensors have the Split layout and labels index classes."""
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise UsageError(f"{where}: images must be uint8 (N,3,32,32), got {images.dtype} {tuple(images.shape)}")
    if labels.dtype != torch.int64 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise UsageError(
            f"{where}: labels must be int64 (N,) with N = {images.shape[0]}, got {labels.dtype} {tuple(labels.shape)}"
        )
    if not classes:
        raise UsageError(f"{where}: no class names")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise UsageError(
            f"{where}: labels span [{int(labels.min())}, {int(labels.max())}] but there are {len(classes)} classes"
        )


def make_split(images: torch.Tensor, labels: torch.Tensor, classes: list[str], *, where: str = "split") -> Split:
    """Validate the layout and compute the checksum; the tensors are made contiguous CPU tensors."""
    images, labels = images.contiguous().cpu(), labels.contiguous().cpu()
    validate_arrays(images, labels, classes, where=where)
    return Split(images=images, labels=labels, classes=list(classes), checksum=content_checksum(images, labels))


def save_split(split: Split, path: str | Path) -> Path:
    """Write a split atomically as a plain tensor dict (loadable with ``weights_only=True``)."""
    payload = {"format": SPLIT_FORMAT, "images": split.images.contiguous(), "labels": split.labels.contiguous()}
    return atomic_torch_save({**payload, "classes": list(split.classes), "checksum": split.checksum}, path)


def load_split(path: str | Path) -> Split:
    """Read a split written by ``save_split`` and verify its content checksum (ValueError naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"prepared split {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise UsageError(f"prepared split {path} cannot be read: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != SPLIT_FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise UsageError(f"prepared split {path} has format {got!r}, expected {SPLIT_FORMAT!r}")
    images, labels, classes = payload["images"], payload["labels"], list(payload["classes"])
    validate_arrays(images, labels, classes, where=str(path))
    actual = content_checksum(images, labels)
    if actual != payload["checksum"]:
        raise UsageError(
            f"checksum mismatch in {path}: stored {payload['checksum'][:16]}…, content hashes to {actual[:16]}… "
            f"(the file is corrupt or was modified)"
        )
    return Split(images=images, labels=labels, classes=classes, checksum=actual)


def load_dataset(directory: str | Path) -> tuple[Split, Split]:
    """(train, test) of a prepared directory; checksums and classes must agree with ``dataset.json``."""
    directory = Path(directory)
    if not (directory / DATASET_JSON).is_file():
        raise MissingInput(f"{directory} is not a prepared data set (no {DATASET_JSON})")
    meta = json.loads((directory / DATASET_JSON).read_text())
    train, test = (load_split(directory / f"{name}.pt") for name in SPLIT_NAMES)
    for name, split in zip(SPLIT_NAMES, (train, test)):
        expected = meta["checksums"][name]
        if split.checksum != expected:
            raise UsageError(
                f"checksum mismatch: {directory / f'{name}.pt'} hashes to {split.checksum[:16]}…, "
                f"{directory / DATASET_JSON} records {expected[:16]}…"
            )
        if split.classes != meta["classes"]:
            raise UsageError(f"{directory / f'{name}.pt'}: classes differ from {directory / DATASET_JSON}")
    return train, test
