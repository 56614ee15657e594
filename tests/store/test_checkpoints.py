"""Mirrored checkpoints: newest wins by (run id, step), on upload and on resume; an outage never stops
training and is reported once; a refused (non-finite) checkpoint never replaces a good one."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
from store_testkit import FAST_RETRY, make_client

from hybridmi.runtime import atomic_write_bytes
from hybridmi.store import CheckpointSync, S3Store, StoreUnavailable
from hybridmi.train.callbacks import CallbackList


def ckpt(directory: Path, step: int) -> Path:
    """A stand-in checkpoint file 'last.pt' (content names its step), replaced by rename as the trainer does."""
    return atomic_write_bytes(directory / "last.pt", f"state@{step}".encode())


def test_upload__an_older_step_of_the_same_run_never_replaces_a_newer_one(store, tmp_path):
    sync = CheckpointSync(store, "ckpt", run_id="r1")
    assert sync.upload(ckpt(tmp_path / "a", 20), 20) is True
    assert sync.upload(ckpt(tmp_path / "b", 10), 10) is False
    assert sync.pointer() == {"run_id": "r1", "step": 20, "key": "ckpt/step-0000000020"}
    assert store.list("ckpt/") == ["ckpt/step-0000000020"]
    assert sync.upload(ckpt(tmp_path / "c", 30), 30) is True
    assert store.list("ckpt/") == ["ckpt/step-0000000030"]  # older steps are dropped


def test_upload__the_current_run_replaces_another_runs_pointer(store, tmp_path):
    CheckpointSync(store, "ckpt", run_id="old").upload(ckpt(tmp_path / "a", 50), 50)
    assert CheckpointSync(store, "ckpt", run_id="new").upload(ckpt(tmp_path / "b", 5), 5) is True
    assert CheckpointSync(store, "ckpt", run_id="new").latest_step() == 5


def test_upload__a_zombie_writer_overtaken_mid_upload_withdraws_its_older_step(store, tmp_path):
    retry_pod = CheckpointSync(store, "ckpt", run_id="r1")
    zombie = CheckpointSync(copy.copy(store), "ckpt", run_id="r1")
    put_file = zombie.store.put_file

    def retry_pod_mirrors_step_30_meanwhile(path, key):
        manifest = put_file(path, key)
        retry_pod.upload(ckpt(tmp_path / "pod", 30), 30)
        return manifest

    zombie.store.put_file = retry_pod_mirrors_step_30_meanwhile
    assert zombie.upload(ckpt(tmp_path / "zombie", 20), 20) is False
    assert retry_pod.pointer()["step"] == 30
    assert store.list("ckpt/") == ["ckpt/step-0000000030"]


@pytest.mark.parametrize(
    "local_step, mirror_run, expect",
    [
        (None, "r1", 20),  # fresh pod: the mirror's checkpoint is downloaded
        (10, "r1", 20),  # stale local copy: the newer mirrored one replaces it
        (30, "r1", 30),  # the local checkpoint is newer: kept
        (20, "r1", 20),  # the same step: kept, nothing downloaded
        (5, "other", 5),  # the mirror belongs to another run: this run's local checkpoint is kept
        (None, "other", 20),  # no local checkpoint: resume from what the mirror holds
    ],
)
def test_restore__the_newer_of_local_and_mirrored_is_used(store, tmp_path, local_step, mirror_run, expect):
    CheckpointSync(store, "ckpt", run_id=mirror_run).upload(ckpt(tmp_path / "mirrored", 20), 20)
    work = tmp_path / "work"
    local = None if local_step is None else (ckpt(work, local_step), local_step)
    sync = CheckpointSync(store, "ckpt", run_id="r1")
    downloaded = sync.restore(work, local=local)
    assert (work / "last.pt").read_bytes() == f"state@{expect}".encode()
    assert (downloaded is not None) == (expect == 20 and local_step != 20)
    assert sync.flush() and sync.latest_step() == expect  # a kept local checkpoint is mirrored
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []


def test_restore__newer_local_checkpoint_is_mirrored_by_flush(store, tmp_path):
    CheckpointSync(store, "ckpt", run_id="r1").upload(ckpt(tmp_path / "m", 10), 10)
    sync = CheckpointSync(store, "ckpt", run_id="r1")
    assert sync.restore(tmp_path / "w", local=(ckpt(tmp_path / "w", 20), 20)) is None
    assert sync.flush() is True
    assert sync.latest_step() == 20


def test_on_checkpoint__refused_checkpoint_is_not_mirrored_and_the_good_one_stays(store, tmp_path, caplog):
    sync = CheckpointSync(
        store,
        "ckpt",
        run_id="r1",
        accept=lambda path: "autoencoder.w is non-finite" if path.read_bytes() == b"state@30" else None,
    )
    events = CallbackList([sync])
    events.on_checkpoint(ckpt(tmp_path / "w", 20), 20)
    with caplog.at_level(logging.ERROR):
        events.on_checkpoint(ckpt(tmp_path / "w", 30), 30)
        assert sync.flush()
    assert sync.latest_step() == 20  # also when 30 replaced 20 before the worker took it
    assert "step 30 is not mirrored: autoencoder.w is non-finite; the mirror keeps step 20" in caplog.text
    assert sync.flush() is True and sync.latest_step() == 20  # nothing pending: the refused file is not sent later


def test_outage__training_continues_one_warning_per_outage_and_the_next_checkpoint_catches_up(
    bucket, proxy, tmp_path, caplog
):
    store = S3Store(make_client(f"127.0.0.1:{proxy.port}"), bucket, "p", retry=FAST_RETRY)
    sync = CheckpointSync(store, "run/ckpt", run_id="r1")
    events = CallbackList([sync])
    caplog.set_level(logging.INFO, logger="hybridmi.store.checkpoints")
    events.on_checkpoint(ckpt(tmp_path / "w", 10), 10)
    assert sync.flush()
    for outage in range(2):
        proxy.stop()
        for step in (20, 30, 40):
            events.on_checkpoint(ckpt(tmp_path / "w", step + 100 * outage), step + 100 * outage)  # never raises
        assert sync.flush(timeout_s=30) is False  # still down: reported, not raised
        assert (tmp_path / "w" / "last.pt").read_bytes() == f"state@{40 + 100 * outage}".encode()
        proxy.start()
        assert sync.latest_step() == (10 if outage == 0 else 50)
        events.on_checkpoint(ckpt(tmp_path / "w", 50 + 100 * outage), 50 + 100 * outage)
        assert sync.flush() and sync.latest_step() == 50 + 100 * outage
    warnings = [r for r in caplog.records if r.name == "hybridmi.store.checkpoints" and r.levelno == logging.WARNING]
    outages = [r for r in warnings if "training continues" in r.getMessage()]
    assert len(outages) == 2 and len(warnings) == 4  # and one 'could not be mirrored' per failed flush
    assert sum("reachable again" in r.getMessage() for r in caplog.records) == 2


def test_flush__mirrors_the_checkpoint_an_outage_kept_local_once_the_store_is_back(bucket, proxy, tmp_path):
    store = S3Store(make_client(f"127.0.0.1:{proxy.port}"), bucket, "p", retry=FAST_RETRY)
    sync = CheckpointSync(store, "run/ckpt", run_id="r1")
    sync.on_checkpoint(ckpt(tmp_path / "w", 10), 10)
    proxy.stop()
    sync.on_checkpoint(ckpt(tmp_path / "w", 20), 20)
    assert sync.flush() is False  # still down: reported, not raised
    proxy.start()
    assert sync.flush() is True and sync.latest_step() == 20
    assert sync.download_latest(tmp_path / "pod2").read_bytes() == b"state@20"


def test_newest_wins__a_rerun_after_a_proxy_cut_keeps_the_newer_local_checkpoint(bucket, proxy, tmp_path):
    """The issue's case: mirror at step 10, local last.pt at 20 (the cut lost that upload); the rerun must not
    download 10 over 20, and mirrors 20 once it can."""
    store = S3Store(make_client(f"127.0.0.1:{proxy.port}"), bucket, "p", retry=FAST_RETRY)
    first = CheckpointSync(store, "run/ckpt", run_id="r1")
    first.on_checkpoint(ckpt(tmp_path / "w", 10), 10)
    proxy.stop()
    first.on_checkpoint(ckpt(tmp_path / "w", 20), 20)
    with pytest.raises(StoreUnavailable):
        first.latest_step()
    proxy.start()
    rerun = CheckpointSync(store, "run/ckpt", run_id="r1")
    assert rerun.restore(tmp_path / "w", local=(tmp_path / "w" / "last.pt", 20)) is None
    assert (tmp_path / "w" / "last.pt").read_bytes() == b"state@20"
    assert rerun.flush() and rerun.latest_step() == 20


def test_step_key__negative_step_raises_value_error(store):
    with pytest.raises(ValueError, match="-1"):
        CheckpointSync(store, "ckpt").step_key(-1)


def test_restore__a_damaged_mirror_falls_back_to_local_or_scratch(store, tmp_path, caplog):
    CheckpointSync(store, "ckpt", run_id="r1").upload(ckpt(tmp_path / "m", 20), 20)
    manifest = store.manifest("ckpt/step-0000000020")
    store._delete_names([f"ckpt/step-0000000020/.versions/{manifest.version}/last.pt"])
    sync = CheckpointSync(store, "ckpt", run_id="r1")
    with caplog.at_level(logging.WARNING):
        assert sync.restore(tmp_path / "w", local=(ckpt(tmp_path / "w", 10), 10)) is None
        assert sync.restore(tmp_path / "fresh", local=None) is None
    assert (tmp_path / "w" / "last.pt").read_bytes() == b"state@10" and not (tmp_path / "fresh" / "last.pt").exists()
    assert "continuing from the local checkpoint (step 10)" in caplog.text and "continuing from scratch" in caplog.text
    assert sync.flush() is True and sync.latest_step() == 10  # the good local checkpoint replaces the damaged one


def test_restore__an_unreachable_mirror_fails_rather_than_drop_its_newer_work(bucket, proxy, tmp_path):
    store = S3Store(make_client(f"127.0.0.1:{proxy.port}"), bucket, "p", retry=FAST_RETRY)
    CheckpointSync(store, "ckpt", run_id="r1").upload(ckpt(tmp_path / "m", 20), 20)
    proxy.stop()
    with pytest.raises(StoreUnavailable):
        CheckpointSync(store, "ckpt", run_id="r1").restore(tmp_path / "w", local=(ckpt(tmp_path / "w", 10), 10))
    assert (tmp_path / "w" / "last.pt").read_bytes() == b"state@10"


def test_upload__two_writers_of_one_step_both_end_on_one_whole_copy(store, tmp_path):
    first = CheckpointSync(store, "ckpt", run_id="r1")
    second = CheckpointSync(copy.copy(store), "ckpt", run_id="r1")
    put_file = second.store.put_file

    raced = []

    def first_writer_commits(rel, size):  # inside the second writer's publish, before its commit
        if not raced:
            raced.append(first.store.put_file(ckpt(tmp_path / "first", 20), "ckpt/step-0000000020"))

    second.store.put_file = lambda path, key: put_file(path, key, progress=first_writer_commits)
    assert second.upload(ckpt(tmp_path / "second", 20), 20) is True and raced
    assert store.manifest("ckpt/step-0000000020").version == raced[0].version  # the first writer's copy stands
    assert second.pointer()["step"] == 20
    assert second.download_latest(tmp_path / "pod").read_bytes() == b"state@20"
