"""The hybrid trainer: the loss falls, resumption is bit-identical, NaN stops with the step and terms."""

import pytest
import torch

from hybridmi.config import config_from_dict
from hybridmi.train.checkpoint import latest_checkpoint, load_checkpoint
from hybridmi.train.guard import NonFiniteError, first_nonfinite
from hybridmi.train.hybrid import train_hybrid
from tests.train.test_hybrid_step import SyncCounter


class Recorder:
    def __init__(self):
        self.steps, self.checkpoints = [], []

    def on_step(self, metrics):
        self.steps.append(metrics)

    def on_checkpoint(self, path, step):
        self.checkpoints.append(step)


def _with(cfg, *overrides):
    return config_from_dict(cfg.model_dump(mode="json"), list(overrides))


def test_loss__falls_over_a_few_dozen_steps(tiny_cfg, tiny_data, tmp_path):
    cfg = _with(tiny_cfg, "train.epochs=4", "train.log_every=8")  # 32 steps
    rec = Recorder()
    train_hybrid(cfg, tiny_data[0], out_dir=tmp_path, callbacks=[rec])
    first, last = rec.steps[0], rec.steps[-1]
    assert last.step == 32 and set(first.terms) == {"recon", "infonce"}
    assert last.loss < 0.8 * first.loss
    assert last.terms["recon"] < first.terms["recon"]
    assert rec.checkpoints[-1] == 32 and last.images_per_s > 0


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_extremes__train_only_their_own_term(tiny_cfg, tiny_data, tmp_path, alpha):
    rec = Recorder()
    train_hybrid(_with(tiny_cfg, f"objective.alpha={alpha}"), tiny_data[0], out_dir=tmp_path, callbacks=[rec])
    expected = {"infonce"} if alpha == 0.0 else {"recon"}
    assert set(rec.steps[-1].terms) == expected
    assert rec.steps[-1].loss == pytest.approx(rec.steps[-1].terms[expected.pop()])


def test_resume__continues_bit_identically(tiny_cfg, tiny_data, tmp_path):
    cfg = _with(tiny_cfg, "train.epochs=2", "train.log_every=1", "train.checkpoint_every=8")  # 16 steps
    straight = Recorder()
    train_hybrid(cfg, tiny_data[0], out_dir=tmp_path / "straight", callbacks=[straight])

    resumed = Recorder()
    # Interrupt after step 8 by raising from a callback, as a preempted pod would stop.
    with pytest.raises(_Preempted):
        train_hybrid(cfg, tiny_data[0], out_dir=tmp_path / "resumed", callbacks=[resumed, _StopAt(8)])
    assert load_checkpoint(latest_checkpoint(tmp_path / "resumed"), kind="hybrid")["step"] == 8
    result = train_hybrid(cfg, tiny_data[0], out_dir=tmp_path / "resumed", callbacks=[resumed])
    assert [m.loss for m in resumed.steps] == [m.loss for m in straight.steps]
    finished = train_hybrid(cfg, tiny_data[0], out_dir=tmp_path / "resumed")  # a rerun of a finished run
    assert finished.step == 16 and finished.last_metrics == result.last_metrics  # keeps its last report
    assert [m.terms for m in resumed.steps] == [m.terms for m in straight.steps]
    final = load_checkpoint(latest_checkpoint(tmp_path / "straight"), kind="hybrid")["autoencoder"]
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, final[name]), name


class _Preempted(Exception):
    pass


class _StopAt:
    def __init__(self, step):
        self.step = step

    def on_checkpoint(self, path, step):
        if step == self.step:
            raise _Preempted


def _saved_state(ckpt):
    return {"autoencoder": ckpt["autoencoder"], "moco": ckpt["moco"], "optimizer": ckpt["optimizer"]}


def test_nan_loss__stops_with_step_and_terms_and_keeps_last_checkpoint(tiny_cfg, tiny_data, tmp_path):
    cfg = _with(tiny_cfg, "optim.lr=1e30", "optim.warmup_epochs=0", "train.checkpoint_every=1")
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite loss at step 2: loss=.*recon=.*infonce=.*first non-finite "
        r"gradient autoencoder\.",
    ) as err:
        train_hybrid(cfg, tiny_data[0], out_dir=tmp_path)
    assert "last good checkpoint" in str(err.value)
    ckpt = load_checkpoint(latest_checkpoint(tmp_path), kind="hybrid")
    assert ckpt["step"] == 1
    assert first_nonfinite(_saved_state(ckpt)) is None  # weights, MoCo (key encoder, queue) and optimiser state


def test_nonfinite_update__never_reaches_a_checkpoint(tiny_cfg, tiny_data, tmp_path):
    """A finite loss whose update overflows the weights (lr beyond float32) stops before its checkpoint."""
    cfg = _with(tiny_cfg, "optim.lr=1e39", "optim.warmup_epochs=0", "train.checkpoint_every=1")
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite weights after the update of step 1: first non-finite tensor "
        r"autoencoder\.encoder\.stem\.weight .*last good checkpoint: None",
    ):
        train_hybrid(cfg, tiny_data[0], out_dir=tmp_path)
    assert latest_checkpoint(tmp_path) is None


def _flat(state, prefix=""):
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value
    return out


def test_training_loop__host_syncs_do_not_grow_with_steps(tiny_cfg, tiny_data, tmp_path, monkeypatch):
    """The loop waits for the device only at reads (reports, checkpoints): 4 or 8 steps, the same count."""
    counts = []
    for epochs in (0.5, 1.0):  # 4 and 8 steps; one report and one checkpoint at the end
        reads = []
        original = torch.Tensor.cpu
        monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: reads.append(1) or original(self, *a, **k))
        with SyncCounter() as counter:
            train_hybrid(
                _with(tiny_cfg, f"train.epochs={epochs}", "train.log_every=100", "train.checkpoint_every=100"),
                tiny_data[0],
                out_dir=tmp_path / str(epochs),
            )
        monkeypatch.undo()
        counts.append((len(counter.calls), len(reads)))
    assert counts[0] == counts[1]


def test_resume__refuses_a_changed_model(tiny_cfg, tiny_data, tmp_path):
    train_hybrid(_with(tiny_cfg, "train.epochs=0.25"), tiny_data[0], out_dir=tmp_path)
    with pytest.raises(ValueError, match="different 'model' config"):
        train_hybrid(_with(tiny_cfg, "model.channels=12"), tiny_data[0], out_dir=tmp_path)


class EvalRecorder(Recorder):
    def __init__(self):
        super().__init__()
        self.evals = []

    def on_eval(self, name, value, step):
        self.evals.append((name, value, step))


def test_knn_monitor__reports_every_epoch_without_changing_training(tiny_cfg, tiny_data, tmp_path):
    cfg = _with(tiny_cfg, "train.epochs=2", "train.log_every=1", "train.knn_every=1", "eval.knn_k=5")
    plain, monitored = Recorder(), EvalRecorder()
    train_hybrid(cfg, tiny_data[0], out_dir=tmp_path / "plain", callbacks=[plain])
    train_hybrid(cfg, tiny_data[0], out_dir=tmp_path / "monitored", callbacks=[monitored], monitor=tiny_data[1])
    assert [(name, step) for name, _, step in monitored.evals] == [("knn_acc_y", 8), ("knn_acc_y", 16)]
    assert all(0.0 <= value <= 1.0 for _, value, _ in monitored.evals)
    assert [m.loss for m in monitored.steps] == [m.loss for m in plain.steps]
