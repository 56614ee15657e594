"""Batch order is a pure function of (seed, epoch)."""

from __future__ import annotations

import torch

from hybridmi.data.loader import epoch_permutation


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
