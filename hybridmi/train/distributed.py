"""Training on the N ranks of one torchrun job: the one-process run cut by rank, in the one-process BN groups."""

from __future__ import annotations

import contextlib
import datetime
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn

from hybridmi.models.norm import RunningNorm

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # set by torchrun for every process it starts


@dataclass(frozen=True)
class Ranks:
    """This process in a launch: rank of world_size, local_rank on its node (one process: 0 of 1, local 0)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(
                f"rank {self.rank} of world size {self.world_size} (local rank {self.local_rank}) is not a "
                "valid place in a launch"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Ranks":
        """torchrun's RANK, WORLD_SIZE and LOCAL_RANK from ``env``; none set: one process."""
        values = []
        for name in ENV_VARS:
            raw = env.get(name, "").strip()
            if raw and not raw.isdigit():
                raise ValueError(f"{name}={raw!r} is not a non-negative integer")
            values.append(int(raw) if raw else None)
        rank, world, local = values
        if (world or 1) > 1 and rank is None:
            raise ValueError(f"WORLD_SIZE={world} but RANK is not set: start the ranks through torchrun")
        rank = rank or 0
        return cls(rank=rank, world_size=world or 1, local_rank=rank if local is None else local)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, artifacts and metrics."""
        return self.rank == 0


def local_rank_count(spec: int | str, device: torch.device) -> int:
    """Ranks to start on this node for ``train.ranks``: 'auto' = one per visible CUDA device (1 without CUDA)."""
    if spec == "auto":
        return torch.cuda.device_count() if device.type == "cuda" else 1
    count = int(spec)
    if device.type == "cuda" and count > torch.cuda.device_count():
        raise ValueError(
            f"train.ranks {count} exceeds the {torch.cuda.device_count()} visible CUDA devices "
            "(one rank per GPU; set train.ranks=auto or runtime.device=cpu for gloo ranks)"
        )
    return count


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The device of this rank: cuda:LOCAL_RANK on CUDA, else ``device`` itself."""
    if device.type != "cuda" or not ranks.distributed:
        return device
    if ranks.local_rank >= torch.cuda.device_count():
        raise ValueError(f"local rank {ranks.local_rank} has no CUDA device ({torch.cuda.device_count()} visible)")
    return torch.device("cuda", ranks.local_rank)


class RankGroup:
    """The collectives a distributed step needs; on CUDA only ``broadcast`` makes the host wait."""

    def __init__(self, ranks: Ranks, device: torch.device, *, host_group: Any = None) -> None:
        if not ranks.distributed:
            raise ValueError("a RankGroup needs world size > 1")
        self.ranks, self.device, self.main = ranks, device, ranks.main
        self.rank, self.world_size = ranks.rank, ranks.world_size
        self._host_group = host_group  # gloo group for host-side flags (None: the default group is gloo)

    def shard(self, n: int) -> slice:
        """This rank's rows [r·n/W, (r+1)·n/W) of n global rows."""
        if n % self.world_size:
            raise ValueError(f"{n} rows do not split evenly over {self.world_size} ranks")
        size = n // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    @torch.no_grad()
    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` (N, ...) concatenated in rank order: (W·N, ...). No gradient."""
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return torch.cat(parts)

    @torch.no_grad()
    def max_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In place: the elementwise maximum over ranks (a flag set on any rank is set on all)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank: a CPU collective that never waits for the device."""
        box = torch.tensor([int(flag)])
        dist.all_reduce(box, op=dist.ReduceOp.MAX, group=self._host_group)
        return bool(box.item())

    @torch.no_grad()
    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a floating tensor (a new tensor; a NaN on any rank is a NaN on all)."""
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.div_(self.world_size)

    @torch.no_grad()
    def average_(self, tensors: Iterable[torch.Tensor]) -> None:
        """In place, one collective: every floating tensor becomes its mean over ranks (others are left alone)."""
        floats = [t for t in tensors if t.is_floating_point()]
        if not floats:
            return
        flat = self.mean(torch.cat([t.detach().reshape(-1).float() for t in floats]))
        for t, part in zip(floats, flat.split([t.numel() for t in floats])):
            t.copy_(part.view_as(t))

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (any picklable value, tensors included) on every rank."""
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    @torch.no_grad()
    def var_mean(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(unbiased variance, mean) (D,) over every rank's rows x (n, D), combined exactly (Chan et al.):
        M2 = Σ_r M2_r + n·Σ_r (mean_r − mean)², variance = M2 / (W·n − 1)."""
        n = x.shape[0]
        var, mean = torch.var_mean(x, dim=0)
        parts = self.all_gather(torch.stack([mean, var * (n - 1)]))  # (W·2, D)
        means, m2s = parts.view(self.world_size, 2, -1).unbind(1)  # each (W, D)
        mean_all = means.mean(0)
        m2 = m2s.sum(0) + n * (means - mean_all).square().sum(0)
        return m2 / (self.world_size * n - 1), mean_all


class CrossRankShuffle:
    """MoCo's ``_batch_shuffle_ddp`` / ``_batch_unshuffle_ddp`` with the one-process key permutation ``perm``
    (V·B,): rank r encodes rows perm[v·B + r·b : v·B + (r+1)·b] of view v, exactly the one-process BN groups."""

    def __init__(self, group: RankGroup, *, views: int) -> None:
        if views not in (1, 2):
            raise ValueError(f"views {views} is not 1 or 2")
        self.group, self.views = group, views

    def _one_process_order(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank's (V·b, ...) rows → (V·B, ...) in one-process order (view-major, then rank, then row)."""
        gathered = self.group.all_gather(local)  # (W·V·b, ...) rank-major
        return gathered.unflatten(0, (self.group.world_size, self.views, -1)).transpose(0, 1).flatten(0, 2)

    def _own_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's (V·b, ...) rows of a (V·B, ...) tensor in one-process order."""
        return rows.unflatten(0, (self.views, self.group.world_size, -1))[:, self.group.rank].flatten(0, 1)

    def shuffle(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        shuffled = self._one_process_order(x)[self._own_rows(perm)]
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            shuffled = shuffled.contiguous(memory_format=torch.channels_last)
        return shuffled

    def unshuffle(self, k: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k_shuffled = self._one_process_order(k)  # row p: the key of one-process row perm[p]
        k_all = torch.empty_like(k_shuffled).index_copy_(0, perm, k_shuffled)
        return self._own_rows(k_all), k_all


def sync_running_norms(module: nn.Module, group: RankGroup) -> None:
    """Make every ``RunningNorm`` in ``module`` fold in statistics over all ranks' rows (like SyncBatchNorm)."""
    for m in module.modules():
        if isinstance(m, RunningNorm):
            m.batch_stats = group.var_mean


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device, *, timeout_s: float = 600.0) -> Iterator[RankGroup | None]:
    """The default process group (NCCL on CUDA, gloo on the CPU; torchrun's ``env://``), None for one process."""
    if not ranks.distributed:
        yield None
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend, timeout = "nccl" if device.type == "cuda" else "gloo", datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world_size, timeout=timeout)
    try:
        yield RankGroup(ranks, device, host_group=dist.new_group(backend="gloo") if device.type == "cuda" else None)
    finally:
        dist.destroy_process_group()
