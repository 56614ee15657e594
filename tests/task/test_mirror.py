"""The task side of checkpoint mirroring, on real trainer checkpoints: steps read from the file, non-finite
tensors named and never mirrored, and the newer of local and mirrored restored."""

from __future__ import annotations

import logging

import pytest
import torch

from hybridmi.errors import MissingInput
from hybridmi.store import LocalStore
from hybridmi.task.mirror import first_nonfinite, local_checkpoint, open_mirror
from hybridmi.train.checkpoint import load_checkpoint, record_checksum, save_checkpoint


def write(directory, step, *, poison: bool = False):
    weight = torch.ones(3, 2)
    exp_avg = torch.zeros(3, 2)
    if poison:
        exp_avg[1, 0] = float("nan")
    return save_checkpoint(
        directory,
        kind="hybrid",
        step=step,
        config={"optim": {"lr": 1e-3}},
        autoencoder={"enc.weight": weight},
        optimizer={"state": {0: {"exp_avg": exp_avg}}},
        rng={"torch": torch.get_rng_state()},
    )


def test_first_nonfinite__names_the_tensor_or_says_none(tmp_path):
    assert first_nonfinite(write(tmp_path / "good", 4)) is None
    assert first_nonfinite(write(tmp_path / "bad", 4, poison=True)) == "optimizer.state.0.exp_avg is non-finite"
    (tmp_path / "torn.pt").write_bytes(b"\x80\x02truncated")
    assert first_nonfinite(tmp_path / "torn.pt").startswith("it cannot be read")


def test_local_checkpoint__step_from_the_file_and_an_unreadable_one_is_ignored(tmp_path, caplog):
    assert local_checkpoint(tmp_path / "none") is None
    path = write(tmp_path / "w", 12)
    assert local_checkpoint(tmp_path / "w") == (path, 12)
    path.write_bytes(path.read_bytes()[:50])
    with caplog.at_level(logging.WARNING):
        assert local_checkpoint(tmp_path / "w") is None
    assert "unreadable local checkpoint" in caplog.text


def test_open_mirror__restores_the_newer_and_mirrors_only_finite_checkpoints(tmp_path):
    store = LocalStore(tmp_path / "store")
    pod1 = open_mirror(store, key="checkpoints/h/train", run_id="r", directory=tmp_path / "pod1")
    pod1.on_checkpoint(write(tmp_path / "pod1", 8), 8)
    pod1.on_checkpoint(write(tmp_path / "pod1", 9, poison=True), 9)  # refused
    pod1.flush()  # uploads run in the background
    pod2 = open_mirror(store, key="checkpoints/h/train", run_id="r", directory=tmp_path / "pod2")
    assert load_checkpoint(tmp_path / "pod2" / "last.pt", kind="hybrid")["step"] == 8
    assert pod2.latest_step() == 8


class _Payload:
    """What a crafted checkpoint holds: unpickling it would call os.system (here: touch a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_crafted_checkpoint__is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    crafted = tmp_path / "crafted" / "last.pt"
    crafted.parent.mkdir()
    torch.save({"format": 1, "kind": "hybrid", "step": 99, "config": {}, "rng": _Payload(marker)}, crafted)
    record_checksum(crafted)  # whoever can write the bucket can write the digest too
    assert local_checkpoint(crafted.parent) is None  # the mirror's reader: unreadable, ignored
    try:
        load_checkpoint(crafted, kind="hybrid")  # the trainer's reader
    except ValueError as exc:
        assert "cannot read checkpoint" in str(exc) and str(crafted) in str(exc)
    else:
        raise AssertionError("a checkpoint holding code was loaded")
    assert not marker.exists()


def test_trainer_rng_state__round_trips_through_a_data_only_checkpoint(tmp_path):
    import random

    import numpy as np

    from hybridmi.runtime import rng_state, set_rng_state

    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    path = save_checkpoint(tmp_path, kind="hybrid", step=1, config={}, rng=rng_state())
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    set_rng_state(load_checkpoint(path, kind="hybrid")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resume_from__a_stage_the_source_run_never_reached_starts_fresh_and_an_unknown_run_is_refused(tmp_path):
    store = LocalStore(tmp_path / "store")
    source = open_mirror(store, key="checkpoints/src/h1/train", run_id="src", directory=tmp_path / "src")
    source.on_checkpoint(write(tmp_path / "src", 8), 8)
    source.flush()  # the source run was killed after training, before its ddim stage checkpointed
    ddim = tmp_path / "next-ddim"
    open_mirror(
        store,
        key="checkpoints/next/h2/ddim",
        run_id="next",
        directory=ddim,
        stage="ddim",
        resume_from=("src", "checkpoints/src/h2/ddim"),
    )
    assert local_checkpoint(ddim) is None  # fresh
    with pytest.raises(MissingInput, match="resume_from=none: no checkpoint of that run under checkpoints/none/"):
        open_mirror(
            store,
            key="checkpoints/next/h2/ddim",
            run_id="next",
            directory=tmp_path / "other",
            stage="ddim",
            resume_from=("none", "checkpoints/none/h2/ddim"),
        )
