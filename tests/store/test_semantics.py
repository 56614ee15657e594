"""Behaviour every backend must show (each test runs against LocalStore and S3Store on a moto server)."""

from __future__ import annotations

import json
import os

import pytest
from store_testkit import read_tree, write_tree

from hybridmi.runtime import sha256_file
from hybridmi.store import ArtifactNotFound, ChecksumMismatch, LocalStore, StoreError
from hybridmi.store.manifest import MANIFEST, VERSIONS

OLD = {"train.pt": b"old-train" * 100, "sub/dataset.json": b'{"v": 1}'}
NEW = {"train.pt": b"new-train" * 120, "sub/dataset.json": b'{"v": 2}', "extra.bin": os.urandom(3000)}


class Interrupted(Exception):
    pass


def raw_write(store, name: str, data: bytes) -> None:
    """Change an object behind the store's back (a plain file, or a PUT with the raw minio client)."""
    if isinstance(store, LocalStore):
        (store.root / name).write_bytes(data)
    else:
        import io

        store._client.put_object(store.bucket, store.prefix + name, io.BytesIO(data), len(data))


def all_names(store) -> list[str]:
    return list(store._list_names(""))


def test_put_dir__round_trips_every_file_bit_identically(store, tmp_path):
    src = write_tree(tmp_path / "src", NEW)
    manifest = store.put_dir(src, "runs/r1/train")
    out = store.get_dir("runs/r1/train", tmp_path / "out")
    assert read_tree(out) == NEW
    assert {f.path: f.sha256 for f in manifest.files} == {rel: sha256_file(src / rel) for rel in NEW}
    assert sum(f.size for f in manifest.files) == sum(len(v) for v in NEW.values())
    assert store.exists("runs/r1/train") and not store.exists("runs/r1")


def test_put_dir__republish_replaces_content_and_keeps_one_version(store, tmp_path):
    store.put_dir(write_tree(tmp_path / "old", OLD), "k")
    second = store.put_dir(write_tree(tmp_path / "new", NEW), "k")
    assert read_tree(store.get_dir("k", tmp_path / "out")) == NEW
    versions = {n.split("/")[2] for n in all_names(store) if n.startswith(f"k/{VERSIONS}/")}
    assert versions == {second.version}


def test_get_dir__unpublished_key_is_not_found(store, tmp_path):
    with pytest.raises(ArtifactNotFound, match="nope"):
        store.get_dir("nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_put_dir__reader_during_publish_sees_previous_version_or_nothing(store, tmp_path):
    seen = []

    def reader(rel, size):  # runs after each file is stored, before the manifest
        n = len(seen)
        seen.append((store.exists("fresh"), store.exists("k")))
        if not seen[-1][0]:
            with pytest.raises(ArtifactNotFound):
                store.get_dir("fresh", tmp_path / f"fresh-{n}")
        assert read_tree(store.get_dir("k", tmp_path / f"k-{n}")) == OLD

    store.put_dir(write_tree(tmp_path / "old", OLD), "k")
    new = write_tree(tmp_path / "new", NEW)
    store.put_dir(new, "fresh", progress=reader)
    assert seen == [(False, True)] * 3
    store.put_dir(new, "k", progress=reader)  # republish: readers keep getting the complete old version
    assert seen[3:] == [(True, True)] * 3
    assert read_tree(store.get_dir("k", tmp_path / "after")) == NEW


def test_put_dir__interrupted_publish_keeps_previous_version_and_hides_new_one(store, tmp_path):
    store.put_dir(write_tree(tmp_path / "old", OLD), "k")
    calls = []

    def crash_after_first_file(rel, size):
        calls.append(rel)
        raise Interrupted("pod preempted")

    new = write_tree(tmp_path / "new", NEW)
    for key in ("k", "fresh"):
        with pytest.raises(Interrupted):
            store.put_dir(new, key, progress=crash_after_first_file)
    assert len(calls) == 2
    assert read_tree(store.get_dir("k", tmp_path / "out")) == OLD
    assert not store.exists("fresh") and store.list() == ["k"]
    store.put_dir(new, "fresh")  # a retry publishes over the leftovers, which may be a writer still at work
    assert read_tree(store.get_dir("fresh", tmp_path / "out2")) == NEW
    assert len({n.split("/")[2] for n in all_names(store) if n.startswith(f"fresh/{VERSIONS}/")}) == 2
    store.prune_grace_s = 0.0  # once the leftovers are older than the grace period, the next publish removes them
    store.put_dir(new, "fresh")
    assert all(
        n.startswith(f"fresh/{VERSIONS}/{store.manifest('fresh').version}/")
        or n.startswith("k/")
        or n == f"fresh/{MANIFEST}"
        for n in all_names(store)
    )


def test_get_dir__corrupted_object_is_detected_and_named(store, tmp_path):
    manifest = store.put_dir(write_tree(tmp_path / "src", OLD), "k")
    victim = f"k/{VERSIONS}/{manifest.version}/sub/dataset.json"
    raw_write(store, victim, b'{"v": 9}')  # same size, different bytes
    with pytest.raises(ChecksumMismatch, match=victim.replace(".", r"\.")):
        store.get_dir("k", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_get_dir__object_missing_from_manifest_is_a_damaged_artifact(store, tmp_path):
    manifest = store.put_dir(write_tree(tmp_path / "src", OLD), "k")
    store._delete_names([f"k/{VERSIONS}/{manifest.version}/train.pt"])
    with pytest.raises(StoreError, match="damaged.*train.pt"):
        store.get_dir("k", tmp_path / "out")


def test_manifest__paths_escaping_the_artifact_are_rejected(store, tmp_path):
    manifest = store.put_dir(write_tree(tmp_path / "src", {"a": b"x"}), "k")
    doc = json.loads(manifest.to_json())
    doc["files"][0]["path"] = "../../etc/evil"
    raw_write(store, f"k/{MANIFEST}", json.dumps(doc).encode())
    with pytest.raises(StoreError, match="escapes"):
        store.get_dir("k", tmp_path / "out")


def test_put_dir__an_unreadable_manifest_is_replaced_by_the_next_publish(store, tmp_path):
    store.put_dir(write_tree(tmp_path / "old", OLD), "k")
    raw_write(store, f"k/{MANIFEST}", b"not json")
    with pytest.raises(StoreError, match="unreadable"):
        store.get_dir("k", tmp_path / "out")
    store.put_dir(write_tree(tmp_path / "new", NEW), "k")
    assert read_tree(store.get_dir("k", tmp_path / "out")) == NEW


def test_get_dir__non_empty_destination_is_refused(store, tmp_path):
    store.put_dir(write_tree(tmp_path / "src", OLD), "k")
    write_tree(tmp_path / "out", {"keep.txt": b"mine"})
    with pytest.raises(ValueError, match="not an empty directory"):
        store.get_dir("k", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    assert read_tree(store.get_dir("k", tmp_path / "empty")) == OLD


def test_list__returns_complete_artifacts_only(store, tmp_path):
    src = write_tree(tmp_path / "src", OLD)
    for key in ("runs/a/train", "runs/a/probe", "runs/b/train", "datasets/x"):
        store.put_dir(src, key)
    with pytest.raises(Interrupted):
        store.put_dir(src, "runs/c/train", progress=lambda rel, size: (_ for _ in ()).throw(Interrupted()))
    assert store.list("runs/") == ["runs/a/probe", "runs/a/train", "runs/b/train"]
    assert store.list("runs/a") == ["runs/a/probe", "runs/a/train"]
    assert store.list() == ["datasets/x", "runs/a/probe", "runs/a/train", "runs/b/train"]


def test_delete__removes_the_artifact_and_its_objects(store, tmp_path):
    store.put_dir(write_tree(tmp_path / "src", OLD), "k")
    store.put_dir(write_tree(tmp_path / "src", OLD), "k2")
    assert store.delete("k") is True
    assert not store.exists("k") and store.list() == ["k2"]
    assert all(n.startswith("k2/") for n in all_names(store))
    assert store.delete("k") is False


def test_put_file__one_file_artifact_round_trips_under_its_file_name(store, tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"weights" * 1000)
    store.put_file(tmp_path / "ckpt.pt", "ckpt/step-1")
    out = store.get_dir("ckpt/step-1", tmp_path / "dl")
    assert [p.name for p in out.iterdir()] == ["ckpt.pt"] and (out / "ckpt.pt").read_bytes() == b"weights" * 1000


def test_documents__round_trip_and_absent_is_none(store):
    assert store.get_document("ckpt/LATEST") is None
    store.put_document("ckpt/LATEST", {"step": 3, "key": "ckpt/step-3"})
    assert store.get_document("ckpt/LATEST") == {"step": 3, "key": "ckpt/step-3"}


@pytest.mark.parametrize("key", ["", "/", "a/../b", ".hidden", "a/.versions/x", "a//b", "a/MANIFEST.json", "sp ace"])
def test_keys__invalid_ones_raise_value_error_naming_them(store, tmp_path, key):
    src = write_tree(tmp_path / "src", {"a": b"x"})
    with pytest.raises(ValueError, match="invalid"):
        store.put_dir(src, key)


def test_put_dir__empty_or_missing_directory_is_refused(store, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files"):
        store.put_dir(tmp_path / "empty", "k")
    with pytest.raises(ValueError, match="not a directory"):
        store.put_dir(tmp_path / "missing", "k")


def test_get_dir__republish_racing_a_reader_yields_the_new_version_whole(store, tmp_path, monkeypatch):
    store.put_dir(write_tree(tmp_path / "old", OLD), "k")
    new = write_tree(tmp_path / "new", NEW)
    download, raced = store._download, []

    def download_while_a_writer_republishes(name, dest):
        if not raced:  # between reading the manifest and the first object: publish NEW, pruning OLD's objects
            raced.append(name)
            store.put_dir(new, "k")
        return download(name, dest)

    monkeypatch.setattr(store, "_download", download_while_a_writer_republishes)
    assert read_tree(store.get_dir("k", tmp_path / "out")) == NEW
    assert raced
