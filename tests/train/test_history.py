"""Training histories: a row per progress report, kept in the checkpoints, so that a resumed run — in its own
directory or in a fresh one holding only the checkpoint (``--resume-from``) — has the straight run's rows."""

import json
import shutil

import pytest
import torch

from hybridmi.train.checkpoint import CHECKSUMS, LATEST
from hybridmi.train.ddim import train_ddim
from hybridmi.train.history import history_row, read_history, write_history
from hybridmi.train.hybrid import train_hybrid
from tests.train.test_ddim import ddim_cfg

SAME_ON_EVERY_RUN = ("step", "epoch", "loss", "mse", "lr")  # images_per_s is measured, so differs between runs


class Stopped(Exception):
    pass


class Reports:
    """Keeps every progress report; raises Stopped after the report of ``stop_after`` (a pod preempted between
    two checkpoints)."""

    def __init__(self, stop_after=None):
        self.reports, self.stop_after = [], stop_after

    def on_step(self, metrics):
        self.reports.append(metrics)
        if metrics.step == self.stop_after:
            raise Stopped


@pytest.fixture(scope="module")
def latents():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 6, 16, 16, generator=g).half(), torch.zeros(6, dtype=torch.float64), torch.ones(6).double()


def _columns(rows):
    return [{k: row[k] for k in SAME_ON_EVERY_RUN} for row in rows]


def test_ddim_history__a_resume_keeps_rows_up_to_its_checkpoint_and_ends_as_the_straight_run(tmp_path, latents):
    z, mean, std = latents
    cfg = ddim_cfg()  # 8 steps, a report every step, a checkpoint every 3
    straight = train_ddim(cfg, z, mean=mean, std=std, out_dir=tmp_path / "straight")
    assert [row["step"] for row in straight.history] == list(range(1, 9))
    assert set(straight.history[0]) == {"step", "epoch", "loss", "mse", "lr", "images_per_s"}

    with pytest.raises(Stopped):  # reports 4 and 5 are made after the checkpoint of step 3
        train_ddim(cfg, z, mean=mean, std=std, out_dir=tmp_path / "first", callbacks=[Reports(stop_after=5)])
    fresh = tmp_path / "fresh"  # what --resume-from downloads: the checkpoint alone
    fresh.mkdir()
    for name in (LATEST, CHECKSUMS):
        shutil.copy(tmp_path / "first" / name, fresh / name)
    resumed = train_ddim(cfg, z, mean=mean, std=std, out_dir=fresh)
    assert _columns(resumed.history) == _columns(straight.history)  # rows 1-3 kept, 4-8 reported afresh
    again = train_ddim(cfg, z, mean=mean, std=std, out_dir=fresh)  # a rerun of the finished run
    assert again.history == resumed.history


def test_hybrid_history__rows_hold_both_loss_terms_the_lr_and_the_throughput(tiny_cfg, tiny_data, tmp_path):
    recorder = Reports()
    result = train_hybrid(tiny_cfg, tiny_data[0], out_dir=tmp_path, callbacks=[recorder])
    reports = recorder.reports
    assert result.history == [history_row(m) for m in reports] and len(reports) == 4  # 8 steps, log_every 2
    assert set(result.history[0]) == {"step", "epoch", "loss", "recon", "infonce", "lr", "images_per_s"}
    assert result.history[-1]["loss"] == reports[-1].loss and result.history[-1]["images_per_s"] > 0


def test_write_history__round_trips_and_read_history_refuses_other_json(tmp_path):
    rows = [{"step": 1, "epoch": 0.5, "loss": 2.0, "lr": 0.1, "images_per_s": 10.0}]
    path = write_history(tmp_path / "history.json", rows, kind="ddim")
    assert read_history(path) == {"format": 1, "kind": "ddim", "rows": rows}
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]  # written atomically: no temporary left
    (tmp_path / "other.json").write_text(json.dumps({"rows": rows}))
    with pytest.raises(ValueError, match="other.json is not a training history"):
        read_history(tmp_path / "other.json")
