"""Image sources decoded once into uint8 tensors: CIFAR-10/100 (torchvision pickle layout), class folders.

CIFAR goes through torchvision's own ``CIFAR10``/``CIFAR100`` classes. Class folders are
``ROOT/{train,test}/<class>/*.{png,jpg,jpeg}`` in a directory or a ``.tar``/``.tar.gz`` archive of one
(optionally below one top-level folder); images are decoded with ``torchvision.io.decode_image``
(libjpeg/libpng, no PIL) in a thread pool (the decoder releases the GIL). torchvision 0.29 marks its
image decoders deprecated in favour of TorchCodec, which is not among the project's packages; the
pinned torchvision still ships them, and their per-call DeprecationWarning is silenced while decoding.
The synthetic source lives in ``synthetic.py``.
"""

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

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SPLITS = ("train", "test")
_CHUNK = 2048  # images per decode task


# ---------------------------------------------------------------- CIFAR (torchvision pickle layout)


class _CIFAR10Files(CIFAR10):
    """CIFAR10 that requires the files to exist but does not insist on the official md5s.

    torchvision checks each batch file against the official md5; a copy in the same layout (e.g. the
    tiny files the tests write) would be refused. The official md5s are still compared, as a warning,
    by ``_warn_unofficial``; content integrity downstream is our own sha256 checksum.
    """

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class _CIFAR100Files(CIFAR100):
    """CIFAR100 counterpart of ``_CIFAR10Files`` (fine labels, 100 classes)."""

    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}


_CIFAR = {"cifar10": (CIFAR10, _CIFAR10Files, "CIFAR-10"), "cifar100": (CIFAR100, _CIFAR100Files, "CIFAR-100")}


def cifar_files(name: str, root: str | Path) -> list[Path]:
    """The pickle files of CIFAR ``name`` ('cifar10' | 'cifar100') under root, in torchvision's order."""
    official = _cifar_classes(name)[0]
    folder = Path(root) / official.base_folder
    names = [n for n, _ in official.train_list + official.test_list] + [official.meta["filename"]]
    return [folder / n for n in names]


def _cifar_classes(name: str):
    if name not in _CIFAR:
        raise ValueError(f"unknown CIFAR variant {name!r}; expected one of {', '.join(_CIFAR)}")
    return _CIFAR[name]


def ensure_cifar(name: str, root: str | Path, *, download: bool) -> list[Path]:
    """The CIFAR files under root; fetched by torchvision only when ``download``; else a one-line error."""
    official, files_cls, title = _cifar_classes(name)
    files = cifar_files(name, root)
    missing = [p for p in files if not p.is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"{title} not found: expected {Path(root) / official.base_folder}/"
            f"{{{','.join(p.name for p in files)}}} (missing {missing[0].name}); "
            f"set data.download=true to fetch it"
        )
    if missing:
        log.info("downloading %s into %s", title, root)
        files_cls(str(root), train=True, download=True)
    return files


def load_cifar(name: str, root: str | Path, *, download: bool = False) -> tuple[Split, Split]:
    """(train, test) of CIFAR-10/100 in the official python-pickle layout under root."""
    _, files_cls, title = _cifar_classes(name)
    ensure_cifar(name, root, download=download)
    _warn_unofficial(name, root)
    splits = []
    for split_name, train in (("train", True), ("test", False)):
        try:
            ds = files_cls(str(root), train=train, download=False)
        except Exception as exc:  # unpickling errors come in many types
            raise ValueError(
                f"{title} under {root} cannot be read ({split_name}): {exc.__class__.__name__}: {exc}"
            ) from None
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # NHWC -> NCHW
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        splits.append(make_split(images, labels, list(ds.classes), where=f"{title} {split_name} under {root}"))
    return splits[0], splits[1]


def _warn_unofficial(name: str, root: str | Path) -> None:
    official = _cifar_classes(name)[0]
    md5s = dict(official.train_list + official.test_list)
    md5s[official.meta["filename"]] = official.meta["md5"]
    for path in cifar_files(name, root):
        if hashlib.md5(path.read_bytes()).hexdigest() != md5s[path.name]:
            log.warning("%s differs from the official %s file (md5); using it as is", path, name)


# ---------------------------------------------------------------- class folders (directory or archive)


def is_archive(path: Path) -> bool:
    """True for a file whose name ends in .tar, .tgz or .tar.gz."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _is_image(relpath: str) -> bool:
    name = relpath.rsplit("/", 1)[-1]
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _iter_directory(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and _is_image(rel):
            yield rel, path.read_bytes()


def _iter_archive(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(member path, bytes) of the archive's images; truncation or corruption anywhere raises ValueError.

    tarfile alone ends silently at a truncated or damaged header, so the stream is read to its end:
    what follows the last member must be zero padding, and for gzip the end-of-stream CRC is checked.
    """
    last = "(start)"
    try:
        with archive.open("rb") as raw:
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if raw.read(2) == b"\x1f\x8b" else raw
            raw.seek(0)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if member.isfile() and _is_image(member.name):
                        data = tar.extractfile(member).read()
                        if len(data) != member.size:
                            raise tarfile.ReadError(f"{member.name} has {len(data)} of {member.size} bytes")
                        last = member.name
                        yield member.name, data
                _check_end(tar)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ValueError(
            f"corrupt or truncated archive {archive} (after {last}): {exc.__class__.__name__}: {exc}"
        ) from None


def _check_end(tar: tarfile.TarFile) -> None:
    """After the last member only the end-of-archive zero blocks (at least the second one) may follow."""
    padding = 0
    while chunk := tar.fileobj.read(1 << 20):
        if chunk.count(0) != len(chunk):
            raise tarfile.ReadError("the tar stream ends early at a damaged header")
        padding += len(chunk)
    if padding < tarfile.BLOCKSIZE:
        raise tarfile.ReadError("the end-of-archive marker is missing")


def _place(relpath: str) -> tuple[str, str, str] | None:
    """(prefix, split, class) of ``[prefix/]split/class/file``, or None when the path is elsewhere."""
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if len(parts) < 3 or parts[-3] not in SPLITS:
        return None
    return "/".join(parts[:-3]), parts[-3], parts[-2]


def load_class_folders(root: str | Path, *, workers: int | None = None) -> tuple[Split, Split]:
    """(train, test) from ``ROOT/{train,test}/<class>/*.{png,jpg,jpeg}``; class order = sorted folder names.

    root: a directory or a .tar/.tgz/.tar.gz archive of one (one top-level folder allowed).
    Every image must decode to 32x32 RGB (grey/RGBA are converted); anything else names the file.
    """
    root = Path(root)
    if is_archive(root):
        items, where = _iter_archive(root), f" in {root}"
    elif root.is_dir():
        items, where = _iter_directory(root), f" in {root}"
    else:
        raise FileNotFoundError(f"class-folder source {root} is neither a directory nor a .tar/.tgz/.tar.gz archive")
    entries: dict[str, list[tuple[str, str, bytes]]] = {s: [] for s in SPLITS}
    prefixes = set()
    for relpath, blob in items:
        place = _place(relpath)
        if place is None:
            continue
        prefix, split, cls = place
        prefixes.add(prefix)
        entries[split].append((cls, relpath, blob))
    if len(prefixes) > 1:
        raise ValueError(f"{root} holds more than one train/test tree: {', '.join(sorted(p or '.' for p in prefixes))}")
    for split in SPLITS:
        if not entries[split]:
            raise ValueError(f"no {split} images in {root} (expected [TOP/]{split}/<class>/*.png|jpg|jpeg)")
    classes = sorted({cls for cls, _, _ in entries["train"]})
    extra = sorted({cls for cls, _, _ in entries["test"]} - set(classes))
    if extra:
        raise ValueError(f"test class {extra[0]!r} in {root} has no train folder (train classes: {', '.join(classes)})")
    index = {cls: i for i, cls in enumerate(classes)}
    splits = []
    for split in SPLITS:
        rows = sorted(entries[split], key=lambda e: (e[0], e[1]))  # by class, then path: independent of archive order
        images = decode_images([blob for _, _, blob in rows], [rel for _, rel, _ in rows], where=where, workers=workers)
        labels = torch.tensor([index[cls] for cls, _, _ in rows], dtype=torch.int64)
        splits.append(make_split(images, labels, classes, where=f"{split} split of {root}"))
    return splits[0], splits[1]


# ---------------------------------------------------------------- decoding


def _clean(exc: Exception) -> str:
    """torchvision's decoder messages start with 'func, /build/path.cpp:LINE, '; keep the reason."""
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return re.sub(r"^\w+, \S+:\d+, ", "", text)


def _decode_chunk(blobs: list[bytes]) -> tuple[np.ndarray, tuple[int, str] | None]:
    """Decode encoded images to (n,3,32,32) uint8; on failure (index, message with a {name} field)."""
    out = np.zeros((len(blobs), 3, 32, 32), dtype=np.uint8)
    for i, blob in enumerate(blobs):
        try:
            image = decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError) as exc:
            return out, (i, "corrupt image {name}: " + _clean(exc).replace("{", "(").replace("}", ")"))
        if tuple(image.shape) != (3, 32, 32):
            return out, (i, f"image {{name}} is {image.shape[-1]}x{image.shape[-2]}, expected 32x32 (CIFAR layout)")
        out[i] = image.numpy()
    return out, None


def default_workers(n: int) -> int:
    """Decode threads for n images: one per CPU (at most 8), none for a single chunk."""
    return 0 if n <= _CHUNK else min(os.cpu_count() or 1, 8)


def decode_images(blobs: list[bytes], names: list[str], *, where: str = "", workers: int | None = None) -> torch.Tensor:
    """Encoded PNG/JPEG bytes -> uint8 (N,3,32,32); a bad image raises ValueError naming it and ``where``.

    workers: decode threads (torchvision's decoders release the GIL, so threads run in parallel without
    the start-up cost and main-module re-import of processes); None picks ``default_workers``; 0 or 1
    decodes in the calling thread.
    """
    workers = default_workers(len(blobs)) if workers is None else workers
    chunks = [blobs[i : i + _CHUNK] for i in range(0, len(blobs), _CHUNK)]
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning
        )
        if workers > 1 and len(chunks) > 1:
            with cf.ThreadPoolExecutor(max_workers=min(workers, len(chunks)), thread_name_prefix="decode") as pool:
                results = list(pool.map(_decode_chunk, chunks))
        else:
            results = [_decode_chunk(chunk) for chunk in chunks]
    for c, (_, error) in enumerate(results):
        if error is not None:
            i, message = error
            raise ValueError(message.format(name=names[c * _CHUNK + i] + where))
    arrays = [array for array, _ in results]
    return torch.from_numpy(np.concatenate(arrays) if arrays else np.zeros((0, 3, 32, 32), np.uint8))
