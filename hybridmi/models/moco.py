"""MoCo-v2 on the contrastive part y of the latent (after facebookresearch/moco ``builder.py``)."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hybridmi.losses import info_nce
from hybridmi.models.autoencoder import split_latent
from hybridmi.models.norm import RunningNorm, group_sizes


class ProjectionHead(nn.Module):
    """MoCo-v2 MLP on the flattened y: (B, c, H, W) → (B, out_dim); Linear, ReLU, Linear (no BatchNorm),
    after a standardisation of y by the running statistics of past batches unless ``standardize`` is false."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, standardize: bool = True) -> None:
        super().__init__()
        norm = [RunningNorm(in_dim)] if standardize else []
        layers = [nn.Flatten(), *norm, nn.Linear(in_dim, hidden), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, out_dim))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


def stratified_permutation(
    n: int, group_size: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A random order of range(n) (int64 (n,)) whose blocks of ``group_size`` take their images round-robin
    from the source blocks [j·g, (j+1)·g): never all from one (for G ≥ 2 groups), at most ⌈g/G⌉ from any."""
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} images do not split into BN groups of {group_size}")
    groups = n // group_size
    members = torch.rand(groups, group_size, generator=generator, device=device).argsort(dim=1)  # G x g
    members = members + group_size * torch.arange(groups, device=device)[:, None]
    rows = torch.randperm(groups, generator=generator, device=device)
    return members[rows].T.reshape(n)  # column by column: one image from each source block in turn


class OneDeviceShuffle:
    """Shuffle-BN on one device: the key encoder sees x[perm] (layout kept); keys return to x's order.
    The DDP trainer swaps in a cross-rank one: ``shuffle(x, perm)`` → what this process's key encoder sees
    (``perm``: the whole key batch's ``key_permutation``), ``unshuffle(k, perm)`` → (k in x's order, all keys)."""

    def shuffle(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        shuffled = x[perm]
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            shuffled = shuffled.contiguous(memory_format=torch.channels_last)
        return shuffled

    def unshuffle(self, k: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.empty_like(k).index_copy_(0, perm, k)  # k[perm[i]] = k_shuffled[i]
        return k, k


class MoCo(nn.Module):
    """Momentum key encoder, key head and a (D, K) queue of negatives for InfoNCE on y = z[:, :c]."""

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        *,
        contrastive_channels: int,
        queue_size: int,
        momentum: float,
        temperature: float,
        symmetric: bool,
        shuffle_bn: bool,
        bn_group_size: int | None = None,
    ) -> None:
        super().__init__()
        for bad, what in (
            (queue_size < 1, f"queue_size {queue_size} must be >= 1"),
            (not 0.0 <= momentum <= 1.0, f"momentum {momentum} is not in [0, 1]"),
            (temperature <= 0, f"temperature {temperature} must be > 0"),
            (contrastive_channels < 1, f"contrastive_channels {contrastive_channels} must be >= 1"),
        ):
            if bad:
                raise ValueError(f"MoCo {what}")
        found = group_sizes(encoder)
        if found and found != {bn_group_size}:
            raise ValueError(
                f"MoCo bn_group_size {bn_group_size} does not match the encoder's BatchNorm group sizes "
                f"{sorted(found, key=str)}"
            )
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in head.modules()):
            raise ValueError("the MoCo-v2 projection head must not contain BatchNorm (it mixes queries within a batch)")
        self.contrastive_channels = contrastive_channels
        self.K, self.m, self.T = queue_size, momentum, temperature
        self.symmetric, self.shuffle_bn, self.bn_group_size = symmetric, shuffle_bn, bn_group_size

        self.encoder_q, self.head_q = encoder, head
        self.encoder_k, self.head_k = copy.deepcopy(encoder), copy.deepcopy(head)
        for p in (*self.encoder_k.parameters(), *self.head_k.parameters()):
            p.requires_grad_(False)
        dim = [m for m in head.modules() if isinstance(m, nn.Linear)][-1].out_features
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))  # DxK
        self.queue_ptr = 0  # a host int, so no step reads a device value (saved through get_extra_state)
        self.key_shuffle = OneDeviceShuffle()

    def get_extra_state(self) -> dict[str, Any]:
        return {"queue_ptr": self.queue_ptr}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.queue_ptr = int(state["queue_ptr"])

    @torch.no_grad()
    def momentum_update(self) -> None:
        """θ_k ← m·θ_k + (1 − m)·θ_q for the key encoder and head (one foreach lerp); buffers are copied."""
        for online, key in ((self.encoder_q, self.encoder_k), (self.head_q, self.head_k)):
            p_k, b_k = list(key.parameters()), list(key.buffers())
            if p_k:
                torch._foreach_lerp_(p_k, [p.detach() for p in online.parameters()], 1.0 - self.m)
            if b_k:
                torch._foreach_copy_(b_k, list(online.buffers()))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys (N, D) into the ring buffer at queue_ptr and advance it by N (mod K); K % N must be 0."""
        n = keys.shape[0]
        if self.K % n:
            raise ValueError(f"queue size {self.K} is not a multiple of the {n} keys enqueued per step")
        if keys.dim() != 2 or keys.shape[1] != self.queue.shape[0]:
            raise ValueError(f"enqueue expects keys of shape (N, {self.queue.shape[0]}), got {tuple(keys.shape)}")
        ptr = self.queue_ptr
        self.queue[:, ptr : ptr + n] = keys.detach().to(self.queue.dtype).T
        self.queue_ptr = (ptr + n) % self.K

    def key_permutation(
        self, batch_size: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """The order in which this step's key views (2·B when symmetric, else B) go through the key encoder:
        stratified within each view's half (``stratified_permutation``) with shuffle_bn and groups, else identity."""
        views, g = 2 if self.symmetric else 1, self.bn_group_size
        if not self.shuffle_bn or g is None:
            return torch.arange(views * batch_size, device=device)
        perms = [stratified_permutation(batch_size, g, generator=generator, device=device) for _ in range(views)]
        return torch.cat([v * batch_size + perm for v, perm in enumerate(perms)])

    @torch.no_grad()
    def keys(self, x: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key views x (N, 3, 32, 32) → (k (N, D) in x's row order, the whole key batch's keys to enqueue)."""
        y, _ = split_latent(self.encoder_k(self.key_shuffle.shuffle(x, perm)), self.contrastive_channels)
        return self.key_shuffle.unshuffle(F.normalize(self.head_k(y).float(), dim=1), perm)

    def contrastive(
        self, q: torch.Tensor, key_views: torch.Tensor, perm: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(InfoNCE loss, keys to enqueue after the optimiser step) from queries q (N, D) of the query views."""
        k, k_all = self.keys(key_views, perm)
        queue = self.queue.clone()
        if not self.symmetric:
            return info_nce(q, k, queue, temperature=self.T), k_all
        (q1, q2), (k1, k2) = q.chunk(2), k.chunk(2)
        nce = 0.5 * (info_nce(q1, k2, queue, temperature=self.T) + info_nce(q2, k1, queue, temperature=self.T))
        return nce, k_all
