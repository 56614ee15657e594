"""Batch order is a pure function of (seed, epoch)."""

from __future__ import annotations

import pytest
import torch

from hybridmi.data.loader import batch_indices, epoch_batches, epoch_permutation


def test_epoch_permutation__same_seed_and_epoch_same_order_else_different():
    a = epoch_permutation(1000, seed=1, epoch=3)
    assert torch.equal(a, epoch_permutation(1000, seed=1, epoch=3))
    assert not torch.equal(a, epoch_permutation(1000, seed=1, epoch=4))
    assert not torch.equal(a, epoch_permutation(1000, seed=2, epoch=3))
    assert torch.equal(a.sort().values, torch.arange(1000)) and a.dtype == torch.int64


def test_epoch_permutation__does_not_touch_or_depend_on_global_rng():
    torch.manual_seed(0)
    a = epoch_permutation(50, seed=5, epoch=0)
    state = torch.get_rng_state()
    torch.manual_seed(123)
    b = epoch_permutation(50, seed=5, epoch=0)
    assert torch.equal(a, b)
    torch.manual_seed(0)
    epoch_permutation(50, seed=5, epoch=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_epoch_batches__resumed_at_a_step_sees_the_same_remaining_batches():
    full = epoch_batches(103, 10, seed=0, epoch=2)
    resumed = batch_indices(103, 10, seed=0, epoch=2)[4:]
    assert len(full) == 10 and all(len(b) == 10 for b in full)
    assert all(torch.equal(x, y) for x, y in zip(full[4:], resumed))
    assert torch.cat(full).unique().numel() == 100


def test_epoch_batches__without_drop_last_covers_everything_once():
    batches = epoch_batches(103, 10, seed=0, epoch=0, drop_last=False)
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(103))


def test_epoch_batches__batch_larger_than_data_is_a_value_error():
    with pytest.raises(ValueError, match="batch size 64 exceeds the 10 items"):
        epoch_batches(10, 64, seed=0, epoch=0)
