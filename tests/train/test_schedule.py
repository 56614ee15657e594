"""Run length and learning-rate schedule: fixed, or laid over a wall-clock budget and frozen once estimated."""

import math

import pytest

from hybridmi.config import config_from_dict
from hybridmi.train.checkpoint import latest_checkpoint, load_checkpoint
from hybridmi.train.hybrid import train_hybrid
from hybridmi.train.schedule import MIN_TIMED_STEPS, RunLength, warmup_cosine


class Tick:
    """A clock that advances a fixed number of seconds per reading: timing becomes deterministic."""

    def __init__(self, seconds):
        self.seconds, self.now = seconds, 0.0

    def __call__(self):
        self.now += self.seconds
        return self.now


class Recorder:
    def __init__(self):
        self.steps = []

    def on_step(self, m):
        self.steps.append((m.step, m.loss, m.lr))


class _Preempted(Exception):
    pass


class StopAt:
    def __init__(self, step):
        self.step = step

    def on_checkpoint(self, path, step):
        if step == self.step:
            raise _Preempted


def _with(cfg, *overrides):
    return config_from_dict(cfg.model_dump(mode="json"), list(overrides))


def test_warmup_cosine__ramps_holds_the_peak_until_the_length_is_known_then_decays():
    assert warmup_cosine(0, warmup_steps=4, total_steps=None) == 0.25
    assert warmup_cosine(10, warmup_steps=4, total_steps=None) == 1.0
    assert warmup_cosine(4, warmup_steps=4, total_steps=14) == 1.0
    assert warmup_cosine(9, warmup_steps=4, total_steps=14) == pytest.approx(0.5)
    assert warmup_cosine(14, warmup_steps=4, total_steps=14) == pytest.approx(0.0)


def test_run_length__fixed_by_epochs_or_estimated_once_from_the_budget():
    assert RunLength.plan(epochs=2.5, steps_per_epoch=10, warmup_steps=3, budget_minutes=None).total_steps == 25
    length = RunLength.plan(epochs=99, steps_per_epoch=10, warmup_steps=3, budget_minutes=2.0)
    assert length.total_steps is None and length.estimate_from == MIN_TIMED_STEPS
    assert length.estimate(step=20, elapsed_s=30.0, step_time_s=0.5) == 20 + 180  # (120 s − 30 s) / 0.5 s
    with pytest.raises(RuntimeError, match="already fixed"):
        length.estimate(step=30, elapsed_s=40.0, step_time_s=0.5)
    saved = length.as_dict()
    again = RunLength.plan(epochs=99, steps_per_epoch=10, warmup_steps=3, budget_minutes=2.0)
    assert RunLength.resume(saved, again).total_steps == 200  # frozen
    other = RunLength.plan(epochs=99, steps_per_epoch=10, warmup_steps=3, budget_minutes=3.0)
    assert RunLength.resume(saved, other).total_steps is None  # a different budget is planned afresh


def test_time_budget__lays_warmup_and_cosine_over_the_estimated_steps(tiny_cfg, tiny_data, tmp_path):
    cfg = _with(tiny_cfg, "train.time_budget_minutes=0.035", "train.log_every=4", "train.checkpoint_every=8")
    rec = Recorder()
    result = train_hybrid(cfg, tiny_data[0], out_dir=tmp_path, callbacks=[rec], clock=Tick(0.1))
    length = result.run_length
    assert length["estimated_at_step"] == MIN_TIMED_STEPS and length["budget_minutes"] == 0.035
    expected = MIN_TIMED_STEPS + math.floor((2.1 - length["elapsed_at_estimate_s"]) / length["step_time_s"])
    assert result.step == length["total_steps"] == expected > MIN_TIMED_STEPS
    saved = load_checkpoint(latest_checkpoint(tmp_path), kind="hybrid")
    assert saved["run_length"] == length and saved["step"] == expected
    peak = cfg.optim.lr
    assert rec.steps[-1][2] == pytest.approx(peak * warmup_cosine(expected - 1, warmup_steps=2, total_steps=expected))
    assert max(lr for _, _, lr in rec.steps) == peak  # held at the peak until the estimate


@pytest.fixture(scope="module")
def budgeted_run(tiny_data, tmp_path_factory):
    """One uninterrupted budgeted run (losses and learning rates per step), shared by the resume tests."""
    from hybridmi.config import load_config

    cfg = load_config(
        None,
        [
            "model.channels=8",
            "model.cells_32=0",
            "model.cells_16=1",
            "model.decoder_expand=2",
            "model.proj_hidden=32",
            "model.proj_dim=16",
            "objective.queue_size=64",
            "objective.temperature=0.2",
            "train.batch_size=16",
            "runtime.device=cpu",
            "optim.warmup_epochs=0.25",
            "optim.lr=3e-3",
            "train.time_budget_minutes=0.12",
            "train.log_every=1",
            "train.checkpoint_every=8",
        ],
    )
    straight = Recorder()
    full = train_hybrid(
        cfg, tiny_data[0], out_dir=tmp_path_factory.mktemp("straight"), callbacks=[straight], clock=Tick(0.1)
    )
    return cfg, full, straight


@pytest.mark.parametrize("stop_at", [24, 16])  # after the estimate (frozen), and before it (made on resume)
def test_time_budget__resume_follows_the_frozen_estimate_bit_identically(budgeted_run, tiny_data, tmp_path, stop_at):
    cfg, full, straight = budgeted_run
    assert full.run_length["estimated_at_step"] == MIN_TIMED_STEPS < 24 < full.step
    resumed = Recorder()
    with pytest.raises(_Preempted):
        train_hybrid(cfg, tiny_data[0], out_dir=tmp_path, callbacks=[resumed, StopAt(stop_at)], clock=Tick(0.1))
    again = train_hybrid(cfg, tiny_data[0], out_dir=tmp_path, callbacks=[resumed], clock=Tick(0.1))
    if stop_at > MIN_TIMED_STEPS:
        assert again.run_length == full.run_length and again.step == full.step
        assert resumed.steps == straight.steps  # losses and learning rates, step for step
    else:  # estimated again after the resume, from the time carried in the checkpoint
        assert again.run_length["estimated_at_step"] > stop_at
        assert resumed.steps[:stop_at] == straight.steps[:stop_at]
