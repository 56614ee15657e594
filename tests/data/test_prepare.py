"""prepare_dataset writes a self-describing directory and decodes each source only once."""

from __future__ import annotations

import json
import os

import pytest
import torch

from hybridmi.config import DataConfig
from hybridmi.data.prepare import prepare_dataset
from hybridmi.data.prepared import combined_checksum, load_dataset, load_split


def _synthetic(tmp_path, **overrides) -> DataConfig:
    fields = dict(
        source="synthetic",
        synthetic_classes=3,
        synthetic_train=30,
        synthetic_test=12,
        cache_dir=str(tmp_path / "cache"),
    )
    return DataConfig(**{**fields, **overrides})


def test_prepare_dataset__writes_splits_and_a_matching_dataset_json(tmp_path):
    meta = prepare_dataset(_synthetic(tmp_path), tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert on_disk == {k: v for k, v in meta.items() if k != "cache"}
    train, test = load_dataset(tmp_path / "out")
    assert on_disk["counts"] == {"train": 30, "test": 12} and on_disk["classes"] == train.classes
    assert on_disk["checksums"] == {"train": train.checksum, "test": test.checksum}
    assert on_disk["checksum"] == combined_checksum(on_disk["checksums"])
    assert on_disk["class_counts"]["train"] == [10, 10, 10]


def test_prepare_dataset__second_prepare_reuses_the_cache_without_decoding(tmp_path):
    cfg = _synthetic(tmp_path)
    first = prepare_dataset(cfg, tmp_path / "a")
    cached = [tmp_path / "cache" / f"synthetic-{first['cache']['key']}" / f"{s}.pt" for s in ("train", "test")]
    stamps = [os.stat(p).st_mtime_ns for p in cached]
    second = prepare_dataset(cfg, tmp_path / "b")
    assert first["cache"]["hit"] is False and second["cache"]["hit"] is True
    assert [os.stat(p).st_mtime_ns for p in cached] == stamps  # the cache was read, not rewritten
    assert (tmp_path / "a" / "dataset.json").read_bytes() == (tmp_path / "b" / "dataset.json").read_bytes()
    other = prepare_dataset(_synthetic(tmp_path, synthetic_seed=1), tmp_path / "c")
    assert other["cache"]["hit"] is False and other["checksum"] != first["checksum"]


def test_prepare_dataset__changed_archive_is_decoded_again(tmp_path, class_tree, make_tar_gz):
    archive = make_tar_gz(class_tree(tmp_path / "tree"), tmp_path / "d.tar.gz")
    cfg = DataConfig(source="folder", root=str(archive), cache_dir=str(tmp_path / "cache"))
    first = prepare_dataset(cfg, tmp_path / "a")
    assert prepare_dataset(cfg, tmp_path / "b")["cache"]["hit"] is True
    os.utime(archive, ns=(0, os.stat(archive).st_mtime_ns + 10**9))
    again = prepare_dataset(cfg, tmp_path / "c")
    assert again["cache"]["hit"] is False and again["checksum"] == first["checksum"]
    assert first["classes"] == ["ant", "cat", "zebra"] and first["source"]["root"] == str(archive)


def test_prepare_dataset__damaged_cache_entry_is_rebuilt(tmp_path):
    cfg = _synthetic(tmp_path)
    first = prepare_dataset(cfg, tmp_path / "a")
    cached = tmp_path / "cache" / f"synthetic-{first['cache']['key']}" / "train.pt"
    cached.write_bytes(cached.read_bytes()[:100])
    second = prepare_dataset(cfg, tmp_path / "b")
    assert second["cache"]["hit"] is False and second["checksum"] == first["checksum"]
    assert load_split(cached).checksum == first["checksums"]["train"]


def test_load_dataset__split_swapped_for_another_is_refused(tmp_path):
    prepare_dataset(_synthetic(tmp_path), tmp_path / "a")
    prepare_dataset(_synthetic(tmp_path, synthetic_seed=9), tmp_path / "b")
    (tmp_path / "a" / "test.pt").write_bytes((tmp_path / "b" / "test.pt").read_bytes())  # valid file, wrong content
    with pytest.raises(ValueError, match=r"checksum mismatch: .*a/test\.pt hashes to"):
        load_dataset(tmp_path / "a")


def test_prepare_dataset__cifar_missing_offline_fails_fast(tmp_path):
    cfg = DataConfig(source="cifar10", root=str(tmp_path / "cifar"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="data.download=true"):
        prepare_dataset(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prepare_dataset__cifar100_pickles_end_to_end(tmp_path, write_cifar100):
    train_labels, _ = write_cifar100(tmp_path / "cifar")
    cfg = DataConfig(source="cifar100", root=str(tmp_path / "cifar"), cache_dir=str(tmp_path / "cache"))
    meta = prepare_dataset(cfg, tmp_path / "out")
    train, _ = load_dataset(tmp_path / "out")
    assert meta["source"]["title"] == "CIFAR-100" and len(meta["classes"]) == 100
    assert torch.equal(train.labels, torch.tensor(train_labels))
