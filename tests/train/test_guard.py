"""FiniteGuard and first_nonfinite: bad updates are skipped on the device, named when read, never saved."""

import math

import pytest
import torch
from torch import nn

from hybridmi.train.guard import MAX_CONSECUTIVE_SKIPS, FiniteGuard, NonFiniteError, first_nonfinite, fused_optimizer


def _setup(mode, *, name="adamw", rollback=True):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    optimizer = fused_optimizer(name, list(model.parameters()), lr=0.1, momentum=0.9, weight_decay=0.01)
    guard = FiniteGuard(
        optimizer=optimizer,
        named_params=model.named_parameters(),
        terms=["half"],
        mode=mode,
        rollback=list(model.buffers()) if rollback else (),
    )
    return model, optimizer, guard


def _step(model, optimizer, guard, x):
    guard.begin()
    loss = model(x).square().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    guard.check_gradients(loss, [0.5 * loss])
    optimizer.step()
    guard.end()


def _snapshot(model, optimizer):
    return [t.clone() for t in (*model.parameters(), *model.buffers())] + [
        v.clone() for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)
    ]


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_skip_step__leaves_weights_optimiser_and_statistics_bit_identical(name):
    model, optimizer, guard = _setup("skip_step", name=name)
    good = torch.randn(8, 3)
    _step(model, optimizer, guard, good)
    before = _snapshot(model, optimizer)
    bad = good.clone()
    bad[3, 1] = float("nan")
    _step(model, optimizer, guard, bad)  # BN statistics see the NaN in the forward pass; rolled back after
    after = _snapshot(model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    _step(model, optimizer, guard, good)  # training goes on from the kept state
    summary = guard.read()
    assert (summary.steps, summary.skipped, guard.skipped_total) == (3, 1, 1)
    assert math.isfinite(summary.means["loss"]) and summary.means["half"] == pytest.approx(summary.means["loss"] / 2)
    assert first_nonfinite({"model": model.state_dict(), "optimizer": optimizer.state_dict()}) is None


def test_skip_step__first_step_skipped_leaves_a_defined_sgd_momentum():
    model, optimizer, guard = _setup("skip_step", name="sgd")
    x = torch.randn(8, 3)
    bad = x.clone()
    bad[0, 0] = float("inf")
    _step(model, optimizer, guard, bad)
    assert all(
        torch.equal(s["momentum_buffer"], torch.zeros_like(s["momentum_buffer"])) for s in optimizer.state.values()
    )
    _step(model, optimizer, guard, x)
    assert first_nonfinite(optimizer.state_dict()) is None


def test_stop__names_the_step_the_terms_and_the_first_nonfinite_gradient():
    model, optimizer, guard = _setup("stop")
    x = torch.randn(8, 3)
    for _ in range(2):
        _step(model, optimizer, guard, x)
    guard.read()
    weights = [p.clone() for p in model.parameters()]
    bad = x.clone()
    bad[:, 0] = float("nan")
    _step(model, optimizer, guard, bad)
    _step(model, optimizer, guard, x)
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite loss at step 3: loss=nan \(half=nan\); first non-finite "
        r"gradient 0\.weight; the update was not applied; ckpt 2",
    ) as err:
        guard.read(context="ckpt 2")
    assert "step 4" not in str(err.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad update never landed
    assert not all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))  # step 4 did


def test_read__names_a_weight_that_became_nonfinite_after_a_finite_loss():
    model, optimizer, guard = _setup("skip_step")
    optimizer.param_groups[0]["lr"] = 1e39  # overflows float32 inside the update
    _step(model, optimizer, guard, torch.randn(8, 3))
    with pytest.raises(
        NonFiniteError, match=r"non-finite weights after the update of step 1: first non-finite tensor 0\.weight"
    ):
        guard.read()


def test_skip_step__gives_up_after_too_many_bad_steps_in_a_row():
    model, optimizer, guard = _setup("skip_step")
    bad = torch.full((8, 3), float("nan"))
    for _ in range(MAX_CONSECUTIVE_SKIPS - 1):
        _step(model, optimizer, guard, bad)
    assert guard.read().skipped == MAX_CONSECUTIVE_SKIPS - 1
    _step(model, optimizer, guard, bad)
    with pytest.raises(NonFiniteError, match=f"{MAX_CONSECUTIVE_SKIPS} steps in a row skipped"):
        guard.read()


def test_guard__refuses_an_optimiser_that_cannot_skip_on_the_device():
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="fused optimiser"):
        FiniteGuard(
            optimizer=torch.optim.AdamW(model.parameters()),
            named_params=model.named_parameters(),
            terms=(),
            mode="stop",
        )
    with pytest.raises(ValueError, match="'retry' is not 'stop' or 'skip_step'"):
        FiniteGuard(
            optimizer=fused_optimizer("adam", list(model.parameters()), lr=1e-3, momentum=0.9, weight_decay=0),
            named_params=model.named_parameters(),
            terms=(),
            mode="retry",
        )


def test_first_nonfinite__walks_nested_state_in_order():
    state = {
        "model": {"a": torch.ones(2), "b": torch.tensor([1.0, float("inf")])},
        "optimizer": {"state": {0: {"exp_avg": torch.tensor([float("nan")]), "step": torch.tensor(3.0)}}},
        "ints": torch.tensor([1, 2]),
        "none": None,
    }
    assert first_nonfinite(state) == "model.b"
    state["model"]["b"][1] = 0.0
    assert first_nonfinite(state) == "optimizer.state.0.exp_avg"
    state["optimizer"]["state"][0]["exp_avg"][0] = 1e38  # large is fine, only NaN/inf count
    assert first_nonfinite(state) is None
