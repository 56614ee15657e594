"""FiniteGuard and first_nonfinite: bad updates are dropped on the device, named when read, never saved."""

import pytest
import torch
from torch import nn

from hybridmi.train.guard import FiniteGuard, NonFiniteError, first_nonfinite, fused_optimizer


def _setup(*, name="adamw"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    optimizer = fused_optimizer(name, list(model.parameters()), lr=0.1, momentum=0.9, weight_decay=0.01)
    guard = FiniteGuard(optimizer=optimizer, named_params=model.named_parameters(), terms=["half"])
    return model, optimizer, guard


def _step(model, optimizer, guard, x):
    loss = model(x).square().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    guard.check_gradients(loss, [0.5 * loss])
    optimizer.step()
    guard.end()


def test_stop__names_the_step_the_terms_and_the_first_nonfinite_gradient():
    model, optimizer, guard = _setup()
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
    model, optimizer, guard = _setup()
    optimizer.param_groups[0]["lr"] = 1e39  # overflows float32 inside the update
    _step(model, optimizer, guard, torch.randn(8, 3))
    with pytest.raises(
        NonFiniteError, match=r"non-finite weights after the update of step 1: first non-finite tensor 0\.weight"
    ):
        guard.read()


def test_guard__refuses_an_optimiser_that_cannot_skip_on_the_device():
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="fused optimiser"):
        FiniteGuard(optimizer=torch.optim.AdamW(model.parameters()), named_params=model.named_parameters(), terms=())


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
