"""run_task with a store (a local directory store here; S3 in tests/faults): the data set found again by its
source, fetched instead of decoded, and never fetched over an earlier output or from a damaged copy."""

from __future__ import annotations

import logging

from hybridmi.cluster import RUN_ID_VAR
from hybridmi.config import load_config
from hybridmi.stages.common import read_sidecar
from hybridmi.store import LocalStore, dataset_key
from hybridmi.store.manifest import VERSIONS
from hybridmi.task.run import STORE_VAR, run_task

TINY = ["data.synthetic_classes=3", "data.synthetic_train=30", "data.synthetic_test=12"]


def prepare(tmp_path, store_dir, out, cache):
    cfg = load_config(None, [*TINY, f"data.cache_dir={tmp_path / cache}"])
    env = {STORE_VAR: str(store_dir), RUN_ID_VAR: "r"}
    return run_task("prepare", cfg, inputs={}, outputs={"dataset": tmp_path / out}, env=env)


def test_prepare__a_later_run_on_another_machine_fetches_instead_of_decoding(tmp_path):
    first = prepare(tmp_path, tmp_path / "store", "ds1", "cache1")
    again = prepare(tmp_path, tmp_path / "store", "ds2", "cache2")  # another machine: an empty decode cache
    checksum = read_sidecar(tmp_path / "ds1")["dataset_checksum"]
    assert first.metadata == {
        "store_key": dataset_key(checksum),
        "store_reused": False,
        "decode_skipped": False,
        "dataset_checksum": checksum,
    }
    assert again.metadata == {**first.metadata, "store_reused": True, "decode_skipped": True}
    assert again.metrics == first.metrics
    assert not (tmp_path / "cache2").exists()  # nothing was decoded
    assert (tmp_path / "ds2" / "train.pt").read_bytes() == (tmp_path / "ds1" / "train.pt").read_bytes()


def test_prepare__rerun_into_its_own_output_decodes_over_it(tmp_path):
    prepare(tmp_path, tmp_path / "store", "ds", "cache")
    again = prepare(tmp_path, tmp_path / "store", "ds", "cache")
    assert again.metadata["decode_skipped"] is False and again.metadata["store_reused"] is True


def test_prepare__a_damaged_published_copy_is_a_cache_miss(tmp_path, caplog):
    first = prepare(tmp_path, tmp_path / "store", "ds1", "cache1")
    store = LocalStore(tmp_path / "store")
    key = first.metadata["store_key"]
    victim = store.root / key / VERSIONS / store.manifest(key).version / "train.pt"
    data = victim.read_bytes()
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with caplog.at_level(logging.WARNING):
        again = prepare(tmp_path, tmp_path / "store", "ds2", "cache2")
    assert again.metadata["decode_skipped"] is False and "checksum mismatch" in caplog.text
    assert read_sidecar(tmp_path / "ds2")["dataset_checksum"] == first.metadata["dataset_checksum"]
