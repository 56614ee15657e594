"""MoCo-v2 on the contrastive part y of the latent (after facebookresearch/moco ``builder.py``).

Names follow the paper: K queue size, m key-encoder momentum, T temperature. The online (query)
encoder is the autoencoder's own encoder: its z is computed once per view and shared with the
reconstruction path, so ``query`` takes z, not x. A training step reads

    moco.momentum_update()
    x = cat(v1, v2)                              # symmetric; otherwise queries from v1, keys from v2
    z, x̂ = ae(x)                                 # one query pass, BN in groups of g images of one view
    perm = moco.key_permutation(B, generator=g)  # which keys share a BN group in the key pass
    loss_nce, keys = moco.forward_contrastive(z, x, perm)
    ... backward, optimiser step ...
    moco.enqueue(keys)

BatchNorm as published: both encoders normalise groups of ``bn_group_size`` images
(``SplitBatchNorm2d``, the one-device form of shuffle-BN); the key batch is permuted before its groups
are formed so that no key's BN group is the query group of its positive (it holds at most ⌈g/G⌉ of
those images, G groups), and the projection head is MoCo-v2's Linear-ReLU-Linear with no BatchNorm, so nothing in it mixes samples.

Across ranks (DistributedDataParallel) the key batch is shuffled over every rank's key views, as
MoCo's ``_batch_shuffle_ddp`` / ``_batch_unshuffle_ddp`` do: ``key_shuffle`` (a ``KeyShuffle``) is
``OneDeviceShuffle`` here and ``hybridmi.train.distributed.CrossRankShuffle`` in a distributed run; every
rank then enqueues the keys of all ranks, so the queues stay equal.

``encoder_q`` is registered here as well as in the autoencoder (shared, not copied): optimise the
autoencoder's parameters plus ``moco.head_q``'s; ``encoder_k`` and ``head_k`` never get gradients.
Nothing on the per-step path reads a device value on the host: the queue pointer is a Python int.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from hybridmi.losses import info_nce
from hybridmi.models.autoencoder import split_latent
from hybridmi.models.norm import RunningNorm, group_sizes


class ProjectionHead(nn.Module):
    """MoCo-v2 MLP on the flattened y: (B, c, H, W) → (B, out_dim); Linear, ReLU, Linear (no BatchNorm).

    y is first standardised per feature by running statistics of past batches (``RunningNorm``): MoCo-v2's
    head reads BN'd ResNet features, while y is a raw latent slice. At initialisation its shared offset is
    ~8x its per-image spread (queries of different images have cosine ~0.99), and without this step
    InfoNCE stayed at ln(1+K) on the test task; no statistic of the current batch enters any output.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Flatten(),
            RunningNorm(in_dim),
            nn.Linear(in_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
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


def stratified_permutation(
    n: int, group_size: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A random order of range(n) whose consecutive blocks of ``group_size`` mix the blocks of range(n).

    Source groups are the contiguous blocks S_j = [j·g, (j+1)·g) (the query BN groups). Members of each
    block are shuffled, the blocks' order is shuffled, and the (G, g) table is read column by column,
    so output block l takes its g images round-robin from different source blocks: never all from one
    (for G ≥ 2) and at most ⌈g/G⌉ from any. Returns int64 (n,) on ``device``; all draws from ``generator``.
    """
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} images do not split into BN groups of {group_size}")
    groups = n // group_size
    members = torch.rand(groups, group_size, generator=generator, device=device).argsort(dim=1)  # G x g
    members = members + group_size * torch.arange(groups, device=device)[:, None]
    rows = torch.randperm(groups, generator=generator, device=device)
    return members[rows].T.reshape(n)  # column by column: one image from each source block in turn


class KeyShuffle(Protocol):
    """How a step's key views reach the key encoder (shuffle-BN) and its keys come back.

    ``shuffle(x, perm)``: this process's key views x → the batch its key encoder sees; ``perm`` is the
    one-process key permutation (``MoCo.key_permutation``) of the whole key batch.
    ``unshuffle(k, perm)``: the encoder's keys → (the keys of x's rows in x's order, the keys of the whole
    key batch in one-process order: what every process enqueues).
    """

    def shuffle(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor: ...

    def unshuffle(self, k: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class OneDeviceShuffle:
    """Shuffle-BN on one device: the key encoder sees x[perm] (layout kept); keys return to x's order."""

    def shuffle(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        shuffled = x[perm]
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            shuffled = shuffled.contiguous(memory_format=torch.channels_last)
        return shuffled

    def unshuffle(self, k: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.empty_like(k).index_copy_(0, perm, k)  # k[perm[i]] = k_shuffled[i]
        return k, k


class MoCo(nn.Module):
    """Momentum key encoder, key head and a (D, K) queue of negatives for InfoNCE on y = z[:, :c].

    encoder: x (B, 3, 32, 32) → z (B, L, 16, 16) (e.g. ``Autoencoder.encoder``); head: y → (B, D).
    With ``symmetric`` each step enqueues 2·B keys, so K must be a multiple of 2·B (``check_batch_size``).
    ``bn_group_size`` g: the encoder's BatchNorm groups (its SplitBatchNorm2d layers must use g; None =
    whole-batch BN). With ``shuffle_bn`` keys are assigned to BN groups by ``stratified_permutation``;
    without, key group j holds the same images as query group j (the leak MoCo's shuffle-BN removes).
    """

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
        if queue_size < 1:
            raise ValueError(f"MoCo queue_size {queue_size} must be >= 1")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"MoCo momentum {momentum} is not in [0, 1]")
        if temperature <= 0:
            raise ValueError(f"MoCo temperature {temperature} must be > 0")
        if contrastive_channels < 1:
            raise ValueError(f"MoCo contrastive_channels {contrastive_channels} must be >= 1")
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
        dim = _output_dim(head)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))  # DxK
        self.queue_ptr = 0  # host state: where the next keys go (saved through get_extra_state)
        self.key_shuffle: KeyShuffle = OneDeviceShuffle()

    def get_extra_state(self) -> dict[str, Any]:
        return {"queue_ptr": self.queue_ptr}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.queue_ptr = int(state["queue_ptr"])

    def keys_per_step(self, batch_size: int) -> int:
        """Keys enqueued per step: 2·B when symmetric, else B."""
        return 2 * batch_size if self.symmetric else batch_size

    def check_batch_size(self, batch_size: int) -> None:
        """ValueError unless the queue holds a whole number of steps' keys and B splits into BN groups."""
        n = self.keys_per_step(batch_size)
        if self.K % n:
            raise ValueError(
                f"queue size {self.K} is not a multiple of {n} keys per step "
                f"(batch size {batch_size}{', x2 for the symmetric loss' if self.symmetric else ''})"
            )
        if self.bn_group_size is not None and batch_size % self.bn_group_size:
            raise ValueError(f"batch size {batch_size} is not a multiple of the BN group size {self.bn_group_size}")

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

    def query(self, z: torch.Tensor) -> torch.Tensor:
        """Online z (B, L, H, W) → q (B, D), L2-normalised float32 projection of y = z[:, :c]."""
        y, _ = split_latent(z, self.contrastive_channels)
        return F.normalize(self.head_q(y).float(), dim=1)

    def key_permutation(
        self, batch_size: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """The order in which this step's key views (2·B when symmetric, else B) go through the key encoder.

        Each view's B keys stay within that view's half of the key batch (BN groups never mix views)
        and, with shuffle_bn and BN groups, are stratified across that half's contiguous blocks, which
        are exactly the query BN groups of their positives (key B + j of v2 is the positive of query j
        of v1). Without shuffle_bn (or without groups) the order is the identity.
        """
        views = 2 if self.symmetric else 1
        g = self.bn_group_size
        if not self.shuffle_bn or g is None:
            return torch.arange(views * batch_size, device=device)
        return torch.cat(
            [
                v * batch_size + stratified_permutation(batch_size, g, generator=generator, device=device)
                for v in range(views)
            ]
        )

    @torch.no_grad()
    def keys(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """Key views x (N, 3, 32, 32) → k (N, D), L2-normalised float32, in ONE momentum-encoder pass.

        The encoder sees x[perm], so its BN group j is images perm[j·g:(j+1)·g]; rows are put back in
        x's order afterwards (row i of k is the key of x[i]).
        """
        return self._keys(x, perm)[0]

    @torch.no_grad()
    def _keys(self, x: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys of x's rows, keys of the whole key batch to enqueue) through ``key_shuffle``."""
        y, _ = split_latent(self.encoder_k(self.key_shuffle.shuffle(x, perm)), self.contrastive_channels)
        return self.key_shuffle.unshuffle(F.normalize(self.head_k(y).float(), dim=1), perm)

    def infonce(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """InfoNCE of queries q (N, D) against positives k (N, D) and a queue snapshot (D, K)."""
        return info_nce(q, k, queue, temperature=self.T)

    def forward_contrastive(
        self, z: torch.Tensor, key_views: torch.Tensor, perm: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's contrastive loss from the online latents z of the query views: ``contrastive(query(z), ...)``."""
        return self.contrastive(self.query(z), key_views, perm)

    def contrastive(
        self, q: torch.Tensor, key_views: torch.Tensor, perm: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's contrastive loss from the queries q = query(z) of the query views, and the keys to enqueue.

        symmetric: z = encoder(x), x = key_views = cat(v1, v2) (2B, ...): queries (q1, q2) and keys
        (k1, k2) come from the same images, the loss is 0.5·(nce(q1, k2) + nce(q2, k1)) and all 2B keys
        are returned for the queue. Otherwise z = encoder(v1), key_views = v2: nce(q1, k2), keys k2
        (B, D). ``perm`` comes from ``key_permutation``. Both terms use the queue as it was before this
        step; enqueue after the optimiser step. In a distributed run B is this rank's share of the batch,
        ``perm`` and the returned keys span every rank's (``key_shuffle``).
        """
        k, k_all = self._keys(key_views, perm)
        queue = self.queue.clone()
        if not self.symmetric:
            return self.infonce(q, k, queue), k_all
        (q1, q2), (k1, k2) = q.chunk(2), k.chunk(2)
        return 0.5 * (self.infonce(q1, k2, queue) + self.infonce(q2, k1, queue)), k_all
