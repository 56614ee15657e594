"""MoCo-v2 on the contrastive part y of the latent (after facebookresearch/moco ``builder.py``).

Names follow the paper: K queue size, m key-encoder momentum, T temperature. The online (query)
encoder is the autoencoder's own encoder: its z is computed once per view and shared with the
reconstruction path, so ``query`` takes z, not x. A training step reads

    z1, x̂1 = ae(v1); z2, x̂2 = ae(v2)
    moco.momentum_update()
    loss_nce, keys = moco.forward_contrastive(z1, z2, v1, v2)
    ... backward, optimiser step ...
    moco.enqueue(keys)

``encoder_q`` is registered here as well as in the autoencoder (shared, not copied): optimise the
autoencoder's parameters plus ``moco.head_q``'s; ``encoder_k`` and ``head_k`` never get gradients.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from hybridmi.losses import info_nce
from hybridmi.models.autoencoder import split_latent


class ProjectionHead(nn.Module):
    """MoCo-v2 MLP on the flattened y: (B, c, H, W) → (B, out_dim); Linear, BN1d, ReLU, Linear."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


def _output_dim(head: nn.Module) -> int:
    """The projection dimension: ``head.out_dim`` or the last Linear layer's width."""
    if isinstance(getattr(head, "out_dim", None), int):
        return head.out_dim
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"cannot tell the output dimension of head {type(head).__name__}: give it an int out_dim")
    return linears[-1].out_features


class MoCo(nn.Module):
    """Momentum key encoder, key head and a (D, K) queue of negatives for InfoNCE on y = z[:, :c].

    encoder: x (B, 3, 32, 32) → z (B, L, 16, 16) (e.g. ``Autoencoder.encoder``); head: y → (B, D).
    With ``symmetric`` each step enqueues 2·B keys, so K must be a multiple of 2·B (``check_batch_size``).
    With ``shuffle_bn`` the key encoder sees a permuted batch in ``bn_splits`` sub-batches, each with its
    own BatchNorm statistics (the single-device stand-in for MoCo's shuffle-BN, as SplitBatchNorm in the
    MoCo CIFAR demo), so BN cannot tell a query from its key through shared batch statistics.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, *, contrastive_channels: int, queue_size: int,
                 momentum: float, temperature: float, symmetric: bool, shuffle_bn: bool, bn_splits: int = 8) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"MoCo queue_size {queue_size} must be >= 1")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"MoCo momentum {momentum} is not in [0, 1]")
        if temperature <= 0:
            raise ValueError(f"MoCo temperature {temperature} must be > 0")
        if contrastive_channels < 1 or bn_splits < 1:
            raise ValueError(f"MoCo contrastive_channels {contrastive_channels} and bn_splits {bn_splits} must be >= 1")
        self.contrastive_channels = contrastive_channels
        self.K, self.m, self.T = queue_size, momentum, temperature
        self.symmetric, self.shuffle_bn, self.bn_splits = symmetric, shuffle_bn, bn_splits

        self.encoder_q, self.head_q = encoder, head
        self.encoder_k, self.head_k = copy.deepcopy(encoder), copy.deepcopy(head)
        for p in (*self.encoder_k.parameters(), *self.head_k.parameters()):
            p.requires_grad_(False)
        dim = _output_dim(head)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))  # DxK
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def keys_per_step(self, batch_size: int) -> int:
        """Keys enqueued per step: 2·B when symmetric, else B."""
        return 2 * batch_size if self.symmetric else batch_size

    def check_batch_size(self, batch_size: int) -> None:
        """ValueError unless the queue holds a whole number of steps' keys (call before training)."""
        n = self.keys_per_step(batch_size)
        if self.K % n:
            raise ValueError(f"queue size {self.K} is not a multiple of {n} keys per step "
                             f"(batch size {batch_size}{', x2 for the symmetric loss' if self.symmetric else ''})")

    @torch.no_grad()
    def momentum_update(self) -> None:
        """θ_k ← m·θ_k + (1 − m)·θ_q for the key encoder and head; their buffers (BN statistics) are copied."""
        for online, key in ((self.encoder_q, self.encoder_k), (self.head_q, self.head_k)):
            for p_q, p_k in zip(online.parameters(), key.parameters(), strict=True):
                p_k.mul_(self.m).add_(p_q.detach().to(p_k.dtype), alpha=1.0 - self.m)
            for b_q, b_k in zip(online.buffers(), key.buffers(), strict=True):
                b_k.copy_(b_q)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys (N, D) into the ring buffer at queue_ptr and advance it by N (mod K); K % N must be 0."""
        n = keys.shape[0]
        if self.K % n:
            raise ValueError(f"queue size {self.K} is not a multiple of the {n} keys enqueued per step")
        if keys.dim() != 2 or keys.shape[1] != self.queue.shape[0]:
            raise ValueError(f"enqueue expects keys of shape (N, {self.queue.shape[0]}), got {tuple(keys.shape)}")
        ptr = int(self.queue_ptr)
        self.queue[:, ptr:ptr + n] = keys.detach().to(self.queue.dtype).T
        self.queue_ptr[0] = (ptr + n) % self.K

    def query(self, z: torch.Tensor) -> torch.Tensor:
        """Online z (B, L, H, W) → q (B, D), L2-normalised float32 projection of y = z[:, :c]."""
        y, _ = split_latent(z, self.contrastive_channels)
        return F.normalize(self.head_q(y).float(), dim=1)

    def _key_projection(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = split_latent(self.encoder_k(x), self.contrastive_channels)
        return self.head_k(y)

    @torch.no_grad()
    def keys(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Key view x (B, 3, 32, 32) → k (B, D), L2-normalised float32, from the momentum encoder and head.

        With shuffle_bn: permute, run in min(bn_splits, B // 2) sub-batches (each ≥ 2 images, for BN1d in
        the head), un-permute. ``generator`` (on x's device) makes the permutation reproducible.
        """
        batch = x.shape[0]
        splits = min(self.bn_splits, batch // 2)
        if not self.shuffle_bn or splits < 2:
            return F.normalize(self._key_projection(x).float(), dim=1)
        perm = torch.randperm(batch, device=x.device, generator=generator)
        chunks = [self._key_projection(part) for part in x[perm].tensor_split(splits)]
        k_shuffled = torch.cat(chunks)
        k = torch.empty_like(k_shuffled)
        k[perm] = k_shuffled  # undo the permutation: row perm[i] of k is the key of x[perm[i]]
        return F.normalize(k.float(), dim=1)

    def infonce(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """InfoNCE of queries q (N, D) against positives k (N, D) and the current queue (a snapshot)."""
        return info_nce(q, k, self.queue.clone().detach(), temperature=self.T)

    def forward_contrastive(self, z1: torch.Tensor, z2: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's contrastive loss from the online latents z1, z2 of views x1, x2.

        symmetric: 0.5·(nce(q1, k2) + nce(q2, k1)), keys to enqueue = cat(k2, k1) (2B, D);
        otherwise: nce(q1, k2), keys = k2 (B, D). Both terms use the queue as it was before this step;
        enqueue the returned keys after the optimiser step.
        """
        q1, k2 = self.query(z1), self.keys(x2)
        if not self.symmetric:
            return self.infonce(q1, k2), k2
        q2, k1 = self.query(z2), self.keys(x1)
        loss = 0.5 * (self.infonce(q1, k2) + self.infonce(q2, k1))
        return loss, torch.cat([k2, k1])
