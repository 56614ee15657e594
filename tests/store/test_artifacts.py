"""Content-addressed data sets and checkpoint sync, on both backends."""
from __future__ import annotations

from pathlib import Path

import pytest
from store_testkit import read_tree, write_tree

from hybridmi.store import CheckpointSync, PublishedDataset, dataset_key, publish_dataset
from hybridmi.train.callbacks import CallbackList

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


def test_checkpoint_sync__latest_upload_wins_and_older_steps_are_dropped(store, tmp_path):
    sync = CheckpointSync(store, "runs/r1/ckpt")
    assert sync.download_latest(tmp_path / "none") is None and sync.latest_step() is None
    for step in (100, 200, 300):
        (tmp_path / "last.pt").write_bytes(f"state@{step}".encode())
        sync.upload(tmp_path / "last.pt", step)
    assert sync.latest_step() == 300
    assert store.list("runs/r1/ckpt/") == ["runs/r1/ckpt/step-0000000300"]
    path = sync.download_latest(tmp_path / "resume")
    assert path == tmp_path / "resume" / "last.pt" and path.read_bytes() == b"state@300"


def test_checkpoint_sync__plugs_into_the_trainer_callbacks(store, tmp_path):
    sync = CheckpointSync(store, "ckpt")
    (tmp_path / "c.pt").write_bytes(b"weights")
    CallbackList([sync]).on_checkpoint(Path(tmp_path / "c.pt"), 7)
    assert sync.latest_step() == 7
    assert sync.download_latest(tmp_path / "pod2").read_bytes() == b"weights"


def test_checkpoint_sync__negative_step_raises_value_error(store, tmp_path):
    with pytest.raises(ValueError, match="-1"):
        CheckpointSync(store, "ckpt").step_key(-1)
