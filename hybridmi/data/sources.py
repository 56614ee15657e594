"""Image sources decoded once into uint8 tensors: CIFAR-10/100 (torchvision pickle layout), class folders."""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import hashlib
import logging
import os
import re
import tarfile
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.io import ImageReadMode, decode_image

from hybridmi.data.prepared import Split, make_split
from hybridmi.errors import MissingInput, UsageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SPLITS = ("train", "test")
_CHUNK = 2048  # images per decode task


# ---------------------------------------------------------------- CIFAR (torchvision pickle layout)


def _without_md5(official: type[CIFAR10]) -> type[CIFAR10]:
    """``official`` requiring its files to exist but not insisting on the official md5s."""
    lists = {what: [[name, None] for name, _ in getattr(official, what)] for what in ("train_list", "test_list")}
    return type(f"_{official.__name__}Files", (official,), {**lists, "meta": {**official.meta, "md5": None}})


_CIFAR = {"cifar10": (CIFAR10, "CIFAR-10"), "cifar100": (CIFAR100, "CIFAR-100")}


def ensure_cifar(name: str, root: str | Path, *, download: bool) -> list[Path]:
    """The pickle files of CIFAR ``name`` ('cifar10' | 'cifar100') under root in torchvision's order; fetched by
    torchvision only when ``download``, else a one-line error."""
    if name not in _CIFAR:
        raise UsageError(f"unknown CIFAR variant {name!r}; expected one of {', '.join(_CIFAR)}")
    official, title = _CIFAR[name]
    folder = Path(root) / official.base_folder
    files = [folder / n for n, _ in official.train_list + official.test_list] + [folder / official.meta["filename"]]
    missing = [p for p in files if not p.is_file()]
    if missing and not download:
        raise MissingInput(
            f"{title} not found: expected {folder}/{{{','.join(p.name for p in files)}}} "
            f"(missing {missing[0].name}); set data.download=true to fetch it"
        )
    if missing:
        log.info("downloading %s into %s", title, root)
        _without_md5(official)(str(root), train=True, download=True)
    return files


def load_cifar(name: str, root: str | Path, *, download: bool = False) -> tuple[Split, Split]:
    """(train, test) of CIFAR-10/100 in the official python-pickle layout under root."""
    files = ensure_cifar(name, root, download=download)
    official, title = _CIFAR[name]
    md5s = {**dict(official.train_list + official.test_list), official.meta["filename"]: official.meta["md5"]}
    for path in files:
        if hashlib.md5(path.read_bytes()).hexdigest() != md5s[path.name]:
            log.warning("%s differs from the official %s file (md5); using it as is", path, name)
    splits = []
    for split_name, train in (("train", True), ("test", False)):
        try:
            ds = _without_md5(official)(str(root), train=train, download=False)
        except Exception as exc:  # unpickling errors come in many types
            raise UsageError(
                f"{title} under {root} cannot be read ({split_name}): {exc.__class__.__name__}: {exc}"
            ) from None
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # NHWC -> NCHW
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        splits.append(make_split(images, labels, list(ds.classes), where=f"{title} {split_name} under {root}"))
    return splits[0], splits[1]


# ---------------------------------------------------------------- class folders (directory or archive)


def is_archive(path: Path) -> bool:
    """True for a file whose name ends in .tar, .tgz or .tar.gz."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _is_image(relpath: str) -> bool:
    name = relpath.rsplit("/", 1)[-1]
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _iter_directory(root: Path) -> Iterator[tuple[str, bytes | None]]:
    """(relative path, bytes) of the images under root, and (relative path, None) of every folder."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            yield rel, None
        elif path.is_file() and _is_image(rel):
            yield rel, path.read_bytes()


def _iter_archive(archive: Path) -> Iterator[tuple[str, bytes | None]]:
    """As ``_iter_directory`` for the archive's members; truncation or corruption anywhere raises UsageError."""
    last = "(start)"
    try:
        with archive.open("rb") as raw:
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if raw.read(2) == b"\x1f\x8b" else raw
            raw.seek(0)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if member.isdir():
                        yield member.name, None
                    elif member.isfile() and _is_image(member.name):
                        data = tar.extractfile(member).read()
                        if len(data) != member.size:
                            raise tarfile.ReadError(f"{member.name} has {len(data)} of {member.size} bytes")
                        last = member.name
                        yield member.name, data
                # after the last member only the end-of-archive zero blocks (at least the second one) may follow
                padding = 0
                while chunk := tar.fileobj.read(1 << 20):
                    if chunk.count(0) != len(chunk):
                        raise tarfile.ReadError("the tar stream ends early at a damaged header")
                    padding += len(chunk)
                if padding < tarfile.BLOCKSIZE:
                    raise tarfile.ReadError("the end-of-archive marker is missing")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise UsageError(
            f"corrupt or truncated archive {archive} (after {last}): {type(exc).__name__}: {exc}"
        ) from None


def _place(relpath: str) -> tuple[str, str, str] | None:
    """(prefix, split, class) of ``[prefix/]split/class/file``, or None when the path is elsewhere."""
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if len(parts) < 3 or parts[-3] not in SPLITS:
        return None
    return "/".join(parts[:-3]), parts[-3], parts[-2]


def load_class_folders(root: str | Path, *, workers: int | None = None) -> tuple[Split, Split]:
    """(train, test) from ``ROOT/{train,test}/<class>/*.{png,jpg,jpeg}``; class order = sorted folder names.
    An empty class folder is refused: dropping it would shift the labels of the classes after it."""
    root = Path(root)
    if is_archive(root):
        items = _iter_archive(root)
    elif root.is_dir():
        items = _iter_directory(root)
    else:
        raise MissingInput(f"class-folder source {root} is neither a directory nor a .tar/.tgz/.tar.gz archive")
    entries: dict[str, list[tuple[str, str, bytes]]] = {s: [] for s in SPLITS}
    folders: dict[tuple[str, str, str], str] = {}  # (prefix, split, class) of each folder: its path
    filled: set[tuple[str, str, str]] = set()
    for relpath, blob in items:
        if blob is None:  # a folder: a class folder when a file in it would be placed
            place = _place(relpath + "/file")
            if place is not None and not place[2].startswith("."):
                folders[place] = relpath
        elif (place := _place(relpath)) is not None:
            filled.add(place)
            entries[place[1]].append((place[2], relpath, blob))
    prefixes = {prefix for prefix, _, _ in filled}
    if len(prefixes) > 1:
        raise UsageError(f"{root} holds more than one train/test tree: {', '.join(sorted(p or '.' for p in prefixes))}")
    empty = sorted(path for place, path in folders.items() if place not in filled and place[0] in prefixes)
    if empty:
        raise UsageError(f"class folder {empty[0]} in {root} holds no images (*.png|jpg|jpeg): fill or remove it")
    for split in SPLITS:
        if not entries[split]:
            raise UsageError(f"no {split} images in {root} (expected [TOP/]{split}/<class>/*.png|jpg|jpeg)")
    classes = sorted({cls for cls, _, _ in entries["train"]})
    extra = sorted({cls for cls, _, _ in entries["test"]} - set(classes))
    if extra:
        raise UsageError(f"test class {extra[0]!r} in {root} has no train folder (train classes: {', '.join(classes)})")
    index = {cls: i for i, cls in enumerate(classes)}
    splits = []
    for split in SPLITS:
        rows = sorted(entries[split], key=lambda e: (e[0], e[1]))  # by class, then path: independent of archive order
        images = decode_images(
            [b for _, _, b in rows], [rel for _, rel, _ in rows], where=f" in {root}", workers=workers
        )
        labels = torch.tensor([index[cls] for cls, _, _ in rows], dtype=torch.int64)
        splits.append(make_split(images, labels, classes, where=f"{split} split of {root}"))
    return splits[0], splits[1]


# ---------------------------------------------------------------- decoding


def _clean(exc: Exception) -> str:
    """torchvision's decoder messages start with 'func, /build/path.cpp:LINE, '; keep the reason."""
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return re.sub(r"^\w+, \S+:\d+, ", "", text)


def _decode_chunk(blobs: list[bytes], names: list[str], where: str) -> np.ndarray:
    """Encoded images -> (n,3,32,32) uint8; UsageError naming the first bad one (``name`` + ``where``)."""
    out = np.zeros((len(blobs), 3, 32, 32), dtype=np.uint8)
    for i, (blob, name) in enumerate(zip(blobs, names)):
        try:
            image = decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(f"corrupt image {name}{where}: {_clean(exc)}") from None
        if tuple(image.shape) != (3, 32, 32):
            raise UsageError(
                f"image {name}{where} is {image.shape[-1]}x{image.shape[-2]}, expected 32x32 (CIFAR layout)"
            )
        out[i] = image.numpy()
    return out


def decode_images(blobs: list[bytes], names: list[str], *, where: str = "", workers: int | None = None) -> torch.Tensor:
    """Encoded PNG/JPEG bytes -> uint8 (N,3,32,32); a bad image raises UsageError naming it and ``where``.
    ``workers``: decode threads, by default one per CPU (at most 8)."""
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    starts = range(0, len(blobs), _CHUNK)
    chunks = [(blobs[i : i + _CHUNK], names[i : i + _CHUNK], where) for i in starts]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The image decoding and encoding capabilities", DeprecationWarning)
        if workers > 1 and len(chunks) > 1:
            with cf.ThreadPoolExecutor(max_workers=min(workers, len(chunks)), thread_name_prefix="decode") as pool:
                arrays = list(pool.map(_decode_chunk, *zip(*chunks)))  # the first bad chunk's error, in order
        else:
            arrays = [_decode_chunk(*chunk) for chunk in chunks]
    return torch.from_numpy(np.concatenate(arrays) if arrays else np.zeros((0, 3, 32, 32), np.uint8))
