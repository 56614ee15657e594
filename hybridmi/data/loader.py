"""Batch order as a pure function of (seed, epoch): a run resumed at (epoch, step) sees the same batches."""

from __future__ import annotations

import hashlib

import torch


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed mixing (seed, epoch) so nearby pairs give unrelated permutations."""
    digest = hashlib.sha256(f"hybridmi-epoch:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def epoch_permutation(n: int, *, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of range(n) as an int64 CPU tensor (n,), fixed by (seed, epoch)."""
    if n < 1:
        raise ValueError(f"cannot permute {n} items: need at least one")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    return torch.randperm(n, generator=generator)
