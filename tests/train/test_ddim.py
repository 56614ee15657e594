import os
import signal

import pytest
import torch
from torch import nn

from hybridmi.config import load_config
from hybridmi.data.loader import epoch_permutation
from hybridmi.errors import Preempted
from hybridmi.runtime import sigterm_handling
from hybridmi.train.checkpoint import latest_checkpoint
from hybridmi.train.ddim import load_ddim, sample_latents, train_ddim
from hybridmi.train.ema import EMA
from hybridmi.train.guard import NonFiniteError


def ddim_cfg(*extra):
    return load_config(
        None,
        [
            "unet.channels=8",
            "unet.channel_mult=[1, 2]",
            "unet.num_res_blocks=1",
            "unet.attn_resolutions=[8]",
            "unet.dropout=0.1",
            "diffusion.num_timesteps=100",
            "ddim.batch_size=8",
            "ddim.epochs=2",
            "ddim.lr=1e-3",
            "ddim.warmup_steps=3",
            "ddim.ema_decay=0.9",
            "ddim.log_every=1",
            "ddim.checkpoint_every=3",
            "runtime.device=cpu",
            "ddim.seed=3",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def latents():
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(32, 6, 16, 16, generator=g) * 2 + 1).half()
    return z, torch.full((6,), 1.0, dtype=torch.float64), torch.full((6,), 2.0, dtype=torch.float64)


class Recorder:
    def __init__(self):
        self.steps, self.checkpoints = [], []

    def on_step(self, m):
        self.steps.append((m.step, m.loss))

    def on_checkpoint(self, path, step):
        self.checkpoints.append(step)


def test_ema__update_moves_a_fraction_toward_the_weights():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9, warmup=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
    assert ema.update(model) == 0.9
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.9 * 1.0 + 0.1 * 3.0))
    assert not ema.module.weight.requires_grad


def test_ema_update__decay_warms_up_then_caps_at_decay():
    model = torch.nn.Linear(1, 1)
    warm, plain = EMA(model, decay=0.9999), EMA(model, decay=0.9999, warmup=False)
    assert warm.update(model) == pytest.approx(0.1) and plain.update(model) == 0.9999
    warm.num_updates = 90
    assert warm.update(model) == pytest.approx(0.91)
    warm.num_updates = 10**6
    assert warm.update(model) == 0.9999


def test_train_ddim__resume_continues_bit_identically(tmp_path, latents):
    z, mean, std = latents
    cfg = ddim_cfg()
    straight = Recorder()
    full = train_ddim(cfg, z, mean=mean, std=std, out_dir=tmp_path / "a", callbacks=[straight])
    assert full.step == 8 and [s for s, _ in straight.steps] == list(range(1, 9))
    first, second = Recorder(), Recorder()
    half = train_ddim(cfg, z, mean=mean, std=std, out_dir=tmp_path / "b", callbacks=[first], stop_at_step=4)
    assert half.step == 4 and first.checkpoints == [3, 4]
    resumed = train_ddim(cfg, z, mean=mean, std=std, out_dir=tmp_path / "b", callbacks=[second])
    assert first.steps + second.steps == straight.steps  # identical losses, step by step
    finished = train_ddim(cfg, z, mean=mean, std=std, out_dir=tmp_path / "b")  # a rerun of a finished run
    assert finished.step == 8 and finished.last_metrics == resumed.last_metrics  # keeps its last report
    a, b = torch.load(full.checkpoint, weights_only=True), torch.load(resumed.checkpoint, weights_only=True)
    for name, tensor in a["unet"].items():
        assert torch.equal(tensor, b["unet"][name]), name
    for name, tensor in a["ema"]["module"].items():
        assert torch.equal(tensor, b["ema"]["module"][name]), name


def test_train_ddim__refuses_to_resume_a_different_unet(tmp_path, latents):
    z, mean, std = latents
    train_ddim(ddim_cfg(), z, mean=mean, std=std, out_dir=tmp_path, stop_at_step=1)
    with pytest.raises(ValueError, match="'unet'"):
        train_ddim(ddim_cfg("unet.channels=16"), z, mean=mean, std=std, out_dir=tmp_path)


def test_train_ddim__nan_loss_stops_naming_the_step(tmp_path, latents):
    z, mean, std = latents
    bad = z.clone()
    bad[:] = float("nan")
    with pytest.raises(NonFiniteError, match="non-finite loss at step 1: .*the update was not applied"):
        train_ddim(ddim_cfg(), bad, mean=mean, std=std, out_dir=tmp_path)
    assert latest_checkpoint(tmp_path) is None


def test_load_ddim__samples_with_the_ema_weights_in_latent_units(tmp_path, latents):
    z, mean, std = latents
    result = train_ddim(ddim_cfg("ddim.epochs=1"), z, mean=mean, std=std, out_dir=tmp_path)
    loaded = load_ddim(tmp_path, device="cpu")
    assert loaded.step == 4 and torch.equal(loaded.mean, mean) and torch.equal(loaded.std, std)
    for name, tensor in result.model.unet.state_dict().items():
        assert torch.equal(tensor, loaded.unet.state_dict()[name]), name
    draw = lambda: sample_latents(
        loaded,
        3,
        steps=5,
        eta=0.0,
        spacing="uniform",  # noqa: E731
        generator=torch.Generator().manual_seed(1),
    )
    x = draw()
    assert x.shape == (3, 6, 16, 16) and torch.equal(x, draw())


def test_train_ddim__rejects_fewer_latents_than_a_batch(tmp_path, latents):
    z, mean, std = latents
    with pytest.raises(ValueError, match="32 training items are fewer than ddim.batch_size 64"):
        train_ddim(ddim_cfg("ddim.batch_size=64"), z, mean=mean, std=std, out_dir=tmp_path)


def _bad_steps(poisoned, *, n, batch, epochs, seed):
    """1-based steps whose batch holds latent ``poisoned`` (batches follow epoch_permutation)."""
    steps = []
    for epoch in range(epochs):
        order = epoch_permutation(n, seed=seed, epoch=epoch).tolist()
        steps.append(epoch * (n // batch) + order.index(poisoned) // batch + 1)
    return steps


def _state(path):
    ckpt = torch.load(path, weights_only=True)
    return {"unet": ckpt["unet"], "ema": ckpt["ema"]["module"], "optimizer": ckpt["optimizer"]["state"]}


def _flat(state, prefix=""):
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value
    return out


def test_train_ddim__nonfinite_batch_stops_and_never_reaches_a_checkpoint(tmp_path, latents):
    z, mean, std = latents
    poisoned = z.clone()
    poisoned[7, 2, 3, 4] = float("nan")
    bad = _bad_steps(7, n=32, batch=8, epochs=2, seed=3)
    assert bad == [3, 6]  # one bad batch per epoch, after a good checkpoint
    saved = {}

    class Keep:
        def on_checkpoint(self, path, step):
            saved[step] = {k: v.clone() for k, v in _flat(_state(path)).items()}

    cfg = ddim_cfg("ddim.checkpoint_every=1")
    with pytest.raises(
        NonFiniteError,
        match=f"non-finite loss at step {bad[0]}: loss=nan \\(mse=nan\\); first non-finite "
        r"gradient unet\.",
    ):
        train_ddim(cfg, poisoned, mean=mean, std=std, out_dir=tmp_path, callbacks=[Keep()])
    assert sorted(saved) == list(range(1, bad[0]))
    assert load_ddim(tmp_path).step == bad[0] - 1
    assert all(torch.isfinite(t).all() for t in saved[bad[0] - 1].values() if t.is_floating_point())


class _SigtermAt(Recorder):
    """Sends this process SIGTERM when step ``at`` is reported, as the kubelet would at any moment."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_step(self, m):
        super().on_step(m)
        if m.step == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def test_train_ddim__sigterm_checkpoints_the_step_in_flight_and_the_rerun_continues_bit_identically(tmp_path, latents):
    z, mean, std = latents
    cfg = ddim_cfg("ddim.checkpoint_every=100")  # no periodic checkpoint within the run
    straight = Recorder()
    full = train_ddim(cfg, z, mean=mean, std=std, out_dir=tmp_path / "a", callbacks=[straight])
    stopped = _SigtermAt(5)
    with sigterm_handling(), pytest.raises(Preempted, match="ddim stopped by SIGTERM after step 6"):
        train_ddim(cfg, z, mean=mean, std=std, out_dir=tmp_path / "b", callbacks=[stopped])
    assert stopped.checkpoints == [6]  # the signal came after step 5 was reported: step 6 was in flight
    rest = Recorder()
    resumed = train_ddim(cfg, z, mean=mean, std=std, out_dir=tmp_path / "b", callbacks=[rest])
    assert stopped.steps + rest.steps == straight.steps
    a, b = torch.load(full.checkpoint, weights_only=True), torch.load(resumed.checkpoint, weights_only=True)
    assert all(torch.equal(t, b["unet"][name]) for name, t in a["unet"].items())
