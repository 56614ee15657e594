"""Builders for tiny on-disk sources in the official layouts (CIFAR pickles, class folders)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def cifar_rows(labels: list[int], offset: int) -> np.ndarray:
    """Official CIFAR rows (N, 3072) = 1024 R, 1024 G, 1024 B, row-major; pixel values encode (label, index)."""
    n = len(labels)
    rows = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    for i, label in enumerate(labels):
        rows[i, 0] = label  # R plane: the label
        rows[i, 1] = (offset + i) % 256  # G plane: the global index
        rows[i, 2] = np.arange(1024, dtype=np.int64).reshape(32, 32) % 251  # B plane: position pattern
    return rows.reshape(n, 3072)


@pytest.fixture
def write_cifar10():
    """write_cifar10(root, per_batch, test) -> (train labels, test labels) in cifar-10-batches-py."""

    def write(root: Path, *, per_batch: int = 4, test: int = 6) -> tuple[list[int], list[int]]:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        train_labels: list[int] = []
        for b in range(1, 6):
            labels = [(b * 3 + i) % 10 for i in range(per_batch)]
            batch = {
                "batch_label": f"training batch {b} of 5",
                "labels": labels,
                "data": cifar_rows(labels, len(train_labels)),
                "filenames": [f"t{b}_{i}.png" for i in range(per_batch)],
            }
            (folder / f"data_batch_{b}").write_bytes(pickle.dumps(batch, protocol=2))
            train_labels += labels
        test_labels = [(7 * i) % 10 for i in range(test)]
        batch = {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels,
            "data": cifar_rows(test_labels, 0),
            "filenames": [f"s{i}.png" for i in range(test)],
        }
        (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
        meta = {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
        return train_labels, test_labels

    return write


@pytest.fixture
def write_cifar100():
    """write_cifar100(root, train, test) -> (train fine labels, test fine labels) in cifar-100-python."""

    def write(root: Path, *, train: int = 12, test: int = 5) -> tuple[list[int], list[int]]:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        fine = [f"fine{c:02d}" for c in range(100)]
        coarse = [f"coarse{c:02d}" for c in range(20)]
        splits = {}
        for name, n, step in (("train", train, 37), ("test", test, 11)):
            labels = [(step * i + 5) % 100 for i in range(n)]
            splits[name] = labels
            entry = {
                "filenames": [f"{name}{i}.png" for i in range(n)],
                "batch_label": f"{name} batch",
                "fine_labels": labels,
                "coarse_labels": [lab // 5 for lab in labels],
                "data": cifar_rows(labels, 0),
            }
            (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        (folder / "meta").write_bytes(
            pickle.dumps({"fine_label_names": fine, "coarse_label_names": coarse}, protocol=2)
        )
        return splits["train"], splits["test"]

    return write


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    """A solid-colour RGB PNG of size (width, height)."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


# class -> colour; 'zebra' sorts last although it is listed first: class order must be sorted names
COLOURS = {"zebra": (250, 10, 10), "ant": (10, 250, 10), "cat": (10, 10, 250)}


@pytest.fixture
def class_tree():
    """class_tree(root, per_class, top) writes [top/]{train,test}/<class>/NNNN.png; returns the tree root."""

    def write(root: Path, *, train: int = 3, test: int = 2, top: str = "") -> Path:
        base = root / top if top else root
        for split, n in (("train", train), ("test", test)):
            for cls, colour in COLOURS.items():
                folder = base / split / cls
                folder.mkdir(parents=True)
                for i in range(n):
                    (folder / f"{i:04d}.png").write_bytes(png_bytes(colour))
        return root

    return write


@pytest.fixture
def make_tar_gz():
    """make_tar_gz(source_dir, archive) packs the directory's contents (its children at the archive root)."""

    def make(source: Path, archive: Path) -> Path:
        with tarfile.open(archive, "w:gz") as tar:
            for child in sorted(source.iterdir()):
                tar.add(child, arcname=child.name)
        return archive

    return make


@pytest.fixture
def class_colours() -> dict[str, tuple[int, int, int]]:
    """The colour of every class written by ``class_tree``."""
    return dict(COLOURS)
