"""The progress report kept beside a checkpoint: a training stage resumed at its very end still reports its loss."""
from __future__ import annotations

import json

from hybridmi.config import load_config
from hybridmi.stages import run_stage
from hybridmi.stages.progress import ProgressSidecar, last_report, report_path
from hybridmi.train.callbacks import StepMetrics


def test_sidecar__holds_the_last_report_at_or_before_the_checkpoint_step(tmp_path):
    sidecar = ProgressSidecar()
    path = tmp_path / "last.pt"
    sidecar.on_checkpoint(path, 2)
    assert json.loads(report_path(path).read_text()) == {"step": 2, "report": None}
    sidecar.on_step(StepMetrics(stage="hybrid", step=4, epoch=1.0, loss=0.5, terms={"recon": 1.0}))
    sidecar.on_checkpoint(path, 5)
    assert last_report(path, 5) == StepMetrics(stage="hybrid", step=4, epoch=1.0, loss=0.5, terms={"recon": 1.0})
    assert last_report(path, 6) is None  # a sidecar of another step says nothing about this checkpoint
    assert last_report(tmp_path / "none.pt", 5) is None


def test_train_stage__resumed_at_the_end_keeps_its_loss_metrics(tmp_path):
    cfg = load_config(None, [
        "data.synthetic_classes=4", "data.synthetic_train=64", "data.synthetic_test=16", f"data.cache_dir={tmp_path / 'c'}",
        "model.channels=4", "model.cells_32=0", "model.cells_16=0", "model.decoder_expand=1", "model.proj_hidden=16",
        "model.proj_dim=8", "objective.queue_size=32", "train.batch_size=16", "train.epochs=1", "train.device=cpu",
        "train.log_every=1", "train.checkpoint_every=2", "optim.warmup_epochs=0",
    ])
    run_stage("prepare", cfg, {}, {"dataset": tmp_path / "ds"})
    first = run_stage("train", cfg, {"dataset": tmp_path / "ds"}, {"model": tmp_path / "model"})
    again = run_stage("train", cfg, {"dataset": tmp_path / "ds"}, {"model": tmp_path / "model"})
    assert {k: again[k] for k in first if k != "train_seconds"} == {k: v for k, v in first.items() if k != "train_seconds"}
    assert {"loss", "loss_recon", "loss_infonce"} <= set(json.loads((tmp_path / "model" / "metrics.json").read_text()))
