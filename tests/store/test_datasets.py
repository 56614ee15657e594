"""Content-addressed data sets and the source pointers that find them, on every backend."""

from __future__ import annotations

import pytest
from store_testkit import read_tree, write_tree

from hybridmi.store import PublishedDataset, dataset_key, find_by_source, publish_dataset, record_source

CHECKSUM = "ab" * 32


def test_publish_dataset__second_run_reuses_the_published_copy(store, tmp_path):
    src = write_tree(tmp_path / "prepared", {"train.pt": b"t" * 100, "test.pt": b"e" * 50, "dataset.json": b"{}"})
    key = publish_dataset(store, src, CHECKSUM).key
    assert key == f"datasets/{CHECKSUM}"
    first = store.manifest(key)
    (src / "train.pt").write_bytes(b"changed")  # same checksum claimed: nothing is uploaded again
    assert publish_dataset(store, src, CHECKSUM) == PublishedDataset(key, reused=True)
    assert store.manifest(key) == first
    assert read_tree(store.get_dir(key, tmp_path / "out"))["train.pt"] == b"t" * 100


@pytest.mark.parametrize("checksum", ["", "ABCDEF0123", "../../x", "abc"])
def test_dataset_key__non_hex_checksum_raises_value_error(checksum):
    with pytest.raises(ValueError, match="checksum"):
        dataset_key(checksum)


def test_source_pointer__finds_the_published_data_set_and_ignores_a_deleted_one(store, tmp_path):
    src = write_tree(tmp_path / "prepared", {"train.pt": b"t", "dataset.json": b"{}"})
    fingerprint = "f0" * 32
    assert find_by_source(store, fingerprint) is None
    key = publish_dataset(store, src, CHECKSUM).key
    record_source(store, fingerprint, CHECKSUM)
    assert find_by_source(store, fingerprint) == key
    store.delete(key)
    assert find_by_source(store, fingerprint) is None
