"""One hybrid training step that never waits for the device: build the models, then call ``HybridStep``.

The step (views → momentum update → one query pass → one key pass → α·recon + (1 − α)·InfoNCE →
backward → finite check → clip → fused optimiser → enqueue) reads no device value on the host: the
learning rate and the queue pointer are host numbers, the finite check is recorded on the device by
``FiniteGuard`` and read by the trainer every few steps, and a non-finite update is skipped inside the
fused optimiser. Every random draw of a step comes from the generator it is given.

With a ``RankGroup`` the step is one rank's share of a DistributedDataParallel step (see
``hybridmi.train.distributed``): the batch it is given is this rank's rows of the global batch, the
query side runs under DDP, keys are shuffled and gathered across ranks, and the finite check is agreed
on by all ranks. The collectives are queued on the device like kernels (NCCL), so the step still never
waits for it on the host.
"""

from __future__ import annotations

import inspect
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hybridmi.config import Config
from hybridmi.data.augment import apply_flips, apply_moco, draw_flips, draw_moco_params
from hybridmi.losses import hybrid_loss, reconstruction_loss
from hybridmi.models.autoencoder import Autoencoder, split_latent
from hybridmi.models.moco import MoCo, ProjectionHead
from hybridmi.runtime import autocast
from hybridmi.train.distributed import CrossRankShuffle, RankGroup, sync_running_norms
from hybridmi.train.guard import FiniteGuard, OnNonFinite, fused_optimizer

AutoencoderViews = Literal["flip", "clean", "moco"]
_DDP_ARGS = inspect.signature(DistributedDataParallel.__init__).parameters


def bn_group_size(cfg: Config) -> int | None:
    """Images per encoder BatchNorm group: batch / objective.bn_splits with MoCo, None for the autoencoder alone."""
    if cfg.objective.alpha >= 1.0 or cfg.objective.bn_splits == 1:
        return None
    return cfg.train.batch_size // cfg.objective.bn_splits


def build_models(cfg: Config) -> tuple[Autoencoder, MoCo | None]:
    """The autoencoder and, unless α = 1 (plain autoencoder), the MoCo-v2 wrapper around its encoder."""
    m, o = cfg.model, cfg.objective
    group = bn_group_size(cfg)
    autoencoder = Autoencoder(
        channels=m.channels,
        cells_32=m.cells_32,
        cells_16=m.cells_16,
        decoder_expand=m.decoder_expand,
        latent_channels=m.latent_channels,
        bn_group_size=group,
    )
    if o.alpha >= 1.0:
        return autoencoder, None
    head = ProjectionHead(m.contrastive_channels * 16 * 16, m.proj_hidden, m.proj_dim)
    moco = MoCo(
        autoencoder.encoder,
        head,
        contrastive_channels=m.contrastive_channels,
        queue_size=o.queue_size,
        momentum=o.momentum,
        temperature=o.temperature,
        symmetric=o.symmetric,
        shuffle_bn=o.shuffle_bn,
        bn_group_size=group,
    )
    return autoencoder, moco


def trainable(autoencoder: Autoencoder, moco: MoCo | None) -> list[tuple[str, nn.Parameter]]:
    """The optimised parameters by name: the autoencoder's, plus the query head's with MoCo."""
    named = [(f"autoencoder.{n}", p) for n, p in autoencoder.named_parameters()]
    if moco is not None:
        named += [(f"moco.head_q.{n}", p) for n, p in moco.head_q.named_parameters()]
    return named


def make_optimizer(params: list[nn.Parameter], cfg: Config) -> torch.optim.Optimizer:
    """The fused optimiser of ``cfg.optim`` (learning rates are set per step by the trainer)."""
    o = cfg.optim
    return fused_optimizer(o.name, params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


class QuerySide(nn.Module):
    """Everything a step optimises, as one module (what DistributedDataParallel wraps): x → (z, x̂, q).

    x (B, 3, 32, 32) in [0, 1] → z (B, L, 16, 16) from the encoder; x̂ (B, 3, 32, 32) from the decoder when
    ``decode`` (None otherwise: at α = 0 the decoder gets no gradient, so it is left out); q (B, D), the
    L2-normalised float32 projection of y = z[:, :c] by MoCo's query head, when there is one (else None).
    """

    def __init__(
        self, autoencoder: Autoencoder, head: nn.Module | None, *, contrastive_channels: int, decode: bool
    ) -> None:
        super().__init__()
        self.encoder = autoencoder.encoder
        self.decoder = autoencoder.decoder if decode else None
        self.head, self.contrastive_channels = head, contrastive_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        z = self.encoder(x)
        x_hat = self.decoder(z) if self.decoder is not None else None
        if self.head is None:
            return z, x_hat, None
        y, _ = split_latent(z, self.contrastive_channels)
        return z, x_hat, F.normalize(self.head(y).float(), dim=1)


class HybridStep:
    """``step(batch, generator=g, lr=…)``: one optimisation step on a float batch (B, 3, 32, 32) in [0, 1].

    α = 1 trains the autoencoder alone on ``autoencoder_views`` of the batch (clean images with random
    horizontal flips by default, as autoencoders are trained); otherwise both MoCo-v2 views are
    reconstructed (the hybrid's documented target: the augmented query views) and contrasted.
    ``compile`` wraps the loss computation (both encoder passes, decoder, heads, InfoNCE) in torch.compile;
    in a distributed run (``group``) it compiles the DDP-wrapped query side only.
    """

    def __init__(
        self,
        autoencoder: Autoencoder,
        moco: MoCo | None,
        optimizer: torch.optim.Optimizer,
        *,
        alpha: float,
        grad_clip: float,
        on_nonfinite: OnNonFinite,
        autoencoder_views: AutoencoderViews = "flip",
        amp: torch.dtype | None = None,
        channels_last: bool = False,
        compile: bool = False,
        group: RankGroup | None = None,
    ) -> None:
        self.autoencoder, self.moco, self.optimizer, self.group = autoencoder, moco, optimizer, group
        self.alpha, self.grad_clip, self.amp = alpha, grad_clip, amp
        self.autoencoder_views, self.channels_last = autoencoder_views, channels_last
        named = trainable(autoencoder, moco)
        self.params = [p for _, p in named]
        terms = ["recon"] if moco is None else (["infonce"] if alpha == 0.0 else ["recon", "infonce"])
        self.query_side: nn.Module = QuerySide(
            autoencoder,
            moco.head_q if moco is not None else None,
            contrastive_channels=moco.contrastive_channels if moco is not None else 0,
            decode=moco is None or alpha > 0.0,
        )
        if group is not None:
            self._distribute(group, compile=compile)
        self.guard = FiniteGuard(
            optimizer=optimizer,
            named_params=named,
            terms=terms,
            mode=on_nonfinite,
            rollback=self._rollback_tensors(),
            across_ranks=group,
        )
        self.losses = torch.compile(self._losses) if compile and group is None else self._losses

    def _distribute(self, group: RankGroup, *, compile: bool) -> None:
        """DDP around the query side (buffers stay per rank: BatchNorm statistics are averaged at checkpoints),
        shuffle-BN across ranks on the key side, RunningNorm statistics over all ranks."""
        cuda = group.device.type == "cuda"
        # torch 2.14 renames broadcast_buffers (deprecated there) to forward_sync_buffers; 2.11 has only the former
        no_buffer_sync = (
            {"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_ARGS else {"broadcast_buffers": False}
        )
        ddp = DistributedDataParallel(
            self.query_side, device_ids=[group.device.index] if cuda else None, **no_buffer_sync
        )
        self.query_side = torch.compile(ddp) if compile else ddp
        if self.moco is not None:
            self.moco.key_shuffle = CrossRankShuffle(group, views=2 if self.moco.symmetric else 1)
            sync_running_norms(self.moco, group)

    def _rollback_tensors(self) -> list[torch.Tensor]:
        """What a step changes besides the optimiser: running statistics, the key encoder and head, the queue."""
        tensors = list(self.autoencoder.buffers())
        if self.moco is not None:
            tensors += [*self.moco.buffers(), *self.moco.encoder_k.parameters(), *self.moco.head_k.parameters()]
        unique = {id(t): t for t in tensors}  # the query encoder's buffers are the autoencoder's
        return list(unique.values())

    def views(
        self, batch: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(query-side images, key-side images, key permutation) for this step; see MoCo.forward_contrastive.

        Random parameters are drawn for the whole global batch (this rank's rows of it with a group), so
        every rank consumes the generator as one process does.
        """
        n, device = batch.shape[0], batch.device
        rows = slice(None)
        if self.group is not None:
            n *= self.group.world_size
            rows = self.group.shard(n)
        if self.moco is None:
            if self.autoencoder_views == "flip":
                batch = apply_flips(batch, draw_flips(n, generator=generator, device=device)[rows])
            elif self.autoencoder_views == "moco":
                batch = apply_moco(
                    batch, draw_moco_params(n, batch.shape[-1], generator=generator, device=device)[rows]
                )
            return self._layout(batch), None, None
        p1 = draw_moco_params(n, batch.shape[-1], generator=generator, device=device)
        p2 = draw_moco_params(n, batch.shape[-1], generator=generator, device=device)
        perm = self.moco.key_permutation(n, generator=generator, device=device)
        v1, v2 = apply_moco(batch, p1[rows]), apply_moco(batch, p2[rows])
        if self.moco.symmetric:
            x = self._layout(torch.cat([v1, v2]))
            return x, x, perm
        return self._layout(v1), self._layout(v2), perm

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _losses(
        self, x: torch.Tensor, key_x: torch.Tensor | None, perm: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """Loss, its terms (in the guard's order) and the keys to enqueue."""
        moco = self.moco
        _, x_hat, q = self.query_side(x)  # at α = 0 (MoCo-v2 alone) the decoder is never run
        recon = reconstruction_loss(x_hat.float(), x) if x_hat is not None else None  # both views' mean when symmetric
        if moco is None:
            return recon, [recon], None
        nce, keys = moco.contrastive(q, key_x, perm)
        loss = hybrid_loss(recon, nce, alpha=self.alpha)
        return loss, ([nce] if recon is None else [recon, nce]), keys

    def __call__(self, batch: torch.Tensor, *, generator: torch.Generator, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.guard.begin()
        if self.moco is not None:
            self.moco.momentum_update()
        x, key_x, perm = self.views(batch, generator)
        with autocast(x.device, self.amp):
            loss, terms, keys = self.losses(x, key_x, perm)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        total_norm = self.guard.check_gradients(loss, terms)
        if self.grad_clip > 0:
            nn.utils.clip_grads_with_norm_(self.params, self.grad_clip, total_norm)
        self.optimizer.step()
        if keys is not None:
            self.moco.enqueue(keys)
        self.guard.end()
