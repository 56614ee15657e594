"""Batch order as a pure function of (seed, epoch): a run resumed at (epoch, step) sees the same batches.

The data sets are small uint8 tensors held in memory (on the GPU when present); batches are index
tensors into them, so no DataLoader, worker processes or sampler state need checkpointing.
"""

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


def steps_per_epoch(n: int, batch_size: int, *, drop_last: bool = True) -> int:
    """Batches in one pass over n items."""
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_batches(n: int, batch_size: int, *, seed: int, epoch: int, drop_last: bool = True) -> list[torch.Tensor]:
    """The index batches (each int64 (batch_size,), the last maybe shorter without drop_last) of one epoch.

    With drop_last a data set smaller than one batch is an error: the epoch would have no steps.
    """
    steps = steps_per_epoch(n, batch_size, drop_last=drop_last)
    if steps == 0:
        raise ValueError(
            f"batch size {batch_size} exceeds the {n} items of the data set (drop_last=True leaves no batch)"
        )
    order = epoch_permutation(n, seed=seed, epoch=epoch)
    return list(order[: steps * batch_size if drop_last else n].split(batch_size))


# The name used by the data-section brief; the architecture document calls it epoch_batches.
batch_indices = epoch_batches
