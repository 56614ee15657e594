"""Writers racing on one key, made deterministic by publishing from inside another publish's progress hook,
on every backend and on S3 both with conditional writes and with the read-back fallback.
(tests/faults/test_concurrent_writers.py races real processes.)"""

from __future__ import annotations

import pytest
from store_testkit import make_client, read_tree, write_tree

from hybridmi.store import LocalStore, PublishConflict, S3Store, publish_dataset
from hybridmi.store.manifest import VERSIONS

A = {"a.bin": b"A" * 300, "same.txt": b"from A"}
B = {"b.bin": b"B" * 200, "same.txt": b"from B"}


def versions(store, key: str) -> set[str]:
    prefix = f"{key}/{VERSIONS}/"
    return {n[len(prefix) :].split("/")[0] for n in store._list_names(prefix)}


def test_put_dir__writer_overtaken_mid_publish_is_told_and_the_winner_stands_whole(store, tmp_path):
    a, b = write_tree(tmp_path / "a", A), write_tree(tmp_path / "b", B)
    store.put_dir(b, "k")  # an existing version, to be replaced by both
    raced = []

    def other_writer_commits(rel, size):
        if not raced:
            raced.append(store.put_dir(b, "k").version)

    with pytest.raises(PublishConflict, match="published concurrently by another writer") as lost:
        store.put_dir(a, "k", progress=other_writer_commits)
    assert raced[0] in str(lost.value)
    assert store.manifest("k").version == raced[0]
    assert read_tree(store.get_dir("k", tmp_path / "out")) == B
    assert versions(store, "k") == {raced[0]}  # the loser withdrew its version; the winner pruned the old one


def test_put_dir__if_absent_loses_to_a_writer_that_published_first(store, tmp_path):
    a, b = write_tree(tmp_path / "a", A), write_tree(tmp_path / "b", B)

    def other_writer_commits(rel, size):
        if not store.exists("k"):
            store.put_dir(b, "k", if_absent=True)

    with pytest.raises(PublishConflict):
        store.put_dir(a, "k", progress=other_writer_commits, if_absent=True)
    assert read_tree(store.get_dir("k", tmp_path / "out")) == B
    with pytest.raises(PublishConflict, match="already published"):
        store.put_dir(a, "k", if_absent=True)


def test_publish_dataset__racing_writers_of_one_checksum_both_succeed_on_one_copy(store, tmp_path):
    src = write_tree(tmp_path / "ds", A)
    checksum = "ab" * 32
    outcomes, original = [], store.put_dir

    def other_run_publishes(rel, size):
        if store.put_dir is not original:
            store.put_dir = original  # the other run publishes without interruption
            outcomes.append(publish_dataset(store, src, checksum))

    store.put_dir = lambda local, key, **kw: original(local, key, progress=other_run_publishes, **kw)
    mine = publish_dataset(store, src, checksum)
    assert outcomes[0].reused is False and mine.reused is True
    assert read_tree(store.get_dir(f"datasets/{checksum}", tmp_path / "out")) == A
    assert versions(store, f"datasets/{checksum}") == {store.manifest(f"datasets/{checksum}").version}


def test_prune__keeps_an_unnamed_version_younger_than_the_grace_period(store, tmp_path):
    a, b = write_tree(tmp_path / "a", A), write_tree(tmp_path / "b", B)
    in_flight = []

    def writer_still_uploading(rel, size):  # A's files are stored, its manifest not yet written
        if not in_flight:
            in_flight.append(store.put_dir(b, "k").version)  # B commits and prunes meanwhile

    with pytest.raises(PublishConflict):
        store.put_dir(a, "k", progress=writer_still_uploading)
    store.put_dir(a, "k2")
    leftovers = write_tree(tmp_path / "c", {"c.bin": b"c"})
    with pytest.raises(RuntimeError):
        store.put_dir(leftovers, "k2", progress=lambda rel, size: (_ for _ in ()).throw(RuntimeError("killed")))
    store.put_dir(a, "k2")  # the killed writer's version is young: it might still be at work
    assert len(versions(store, "k2")) == 2
    store.prune_grace_s = 0.0
    store.put_dir(a, "k2")
    assert versions(store, "k2") == {store.manifest("k2").version}


def test_replace_document__only_the_writer_holding_the_current_tag_wins(store):
    assert store.replace_document("ptr", {"step": 1}, tag=None)
    doc, tag = store.get_document_tagged("ptr")
    assert doc == {"step": 1}
    assert not store.replace_document("ptr", {"step": 9}, tag=None)  # not absent any more
    assert store.replace_document("ptr", {"step": 2}, tag=tag)
    assert not store.replace_document("ptr", {"step": 3}, tag=tag)  # stale tag: someone moved it
    assert store.get_document("ptr") == {"step": 2}


def test_artifact__readable_through_any_root_above_it(store, tmp_path):
    store.put_dir(write_tree(tmp_path / "a", A), "datasets/x")
    if isinstance(store, LocalStore):
        wider = LocalStore(store.root.parent)
        key = f"{store.root.name}/datasets/x"
    else:
        wider = S3Store(store._client, store.bucket)
        key = f"{store.prefix}datasets/x"
    assert read_tree(wider.get_dir(key, tmp_path / "out")) == A


def test_conditional_writes__probed_once_and_honoured_by_moto(moto_endpoint, tmp_path):
    client = make_client(moto_endpoint)
    client.make_bucket("probe-bucket")
    store = S3Store(client, "probe-bucket", "p")
    store.check_access(write=True)
    assert store.conditional_writes is True
    assert list(store._list_names("")) == []  # the probe objects are gone
