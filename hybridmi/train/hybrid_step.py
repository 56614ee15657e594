"""One hybrid training step that never waits for the device: views → query and key passes →
α·recon + (1 − α)·InfoNCE → backward → finite check → clip → fused optimiser → enqueue. With a ``RankGroup``
it is one rank's share of a DDP step; every random draw comes from the given generator."""

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
from hybridmi.train.guard import FiniteGuard, fused_optimizer

AutoencoderViews = Literal["flip", "clean", "moco"]
_DDP_ARGS = inspect.signature(DistributedDataParallel.__init__).parameters


def bn_group_size(cfg: Config) -> int | None:
    """Images per encoder BatchNorm group (batch / objective.bn_splits), None without MoCo or split BN."""
    if cfg.objective.alpha >= 1.0 or cfg.objective.bn_splits == 1:
        return None
    return cfg.train.batch_size // cfg.objective.bn_splits


def build_models(cfg: Config) -> tuple[Autoencoder, MoCo | None]:
    """The autoencoder and, unless α = 1 (plain autoencoder), the MoCo-v2 wrapper around its encoder."""
    m, o = cfg.model, cfg.objective
    group = bn_group_size(cfg)
    shape = m.model_dump(include={"channels", "cells_32", "cells_16", "decoder_expand", "latent_channels"})
    autoencoder = Autoencoder(**shape, bn_group_size=group)
    if o.alpha >= 1.0:
        return autoencoder, None
    head = ProjectionHead(m.contrastive_channels * 16 * 16, m.proj_hidden, m.proj_dim, standardize=m.standardize_y)
    settings = o.model_dump(include={"queue_size", "momentum", "temperature", "symmetric", "shuffle_bn"})
    moco = MoCo(autoencoder.encoder, head, contrastive_channels=m.contrastive_channels, **settings, bn_group_size=group)
    return autoencoder, moco


def trainable(autoencoder: Autoencoder, moco: MoCo | None) -> list[tuple[str, nn.Parameter]]:
    """The optimised parameters by name: the autoencoder's, plus the query head's with MoCo."""
    named = [(f"autoencoder.{n}", p) for n, p in autoencoder.named_parameters()]
    if moco is not None:
        named += [(f"moco.head_q.{n}", p) for n, p in moco.head_q.named_parameters()]
    return named


def make_optimizer(named: list[tuple[str, nn.Parameter]], cfg: Config) -> torch.optim.Optimizer:
    """The fused optimiser of ``cfg.optim`` over ``trainable``'s parameters. Learning rates are set per step by
    the trainer: ``lr × group["lr_scale"]``; the MoCo head is a group of its own when its scale is not 1."""
    o = cfg.optim
    head = [p for n, p in named if n.startswith("moco.head_q.")]
    groups = [{"params": [p for n, p in named if not n.startswith("moco.head_q.")], "lr_scale": 1.0}]
    if head and o.head_lr_scale != 1.0:
        groups.append({"params": head, "lr_scale": o.head_lr_scale})
    else:
        groups[0]["params"] += head
    return fused_optimizer(o.name, groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


class QuerySide(nn.Module):
    """What a step optimises, as one module (what DDP wraps): x (B, 3, 32, 32) → z (B, L, 16, 16),
    x̂ (B, 3, 32, 32) or None (α = 0), q (B, D) L2-normalised float32 or None (no head)."""

    def __init__(
        self,
        autoencoder: Autoencoder,
        head: nn.Module | None,
        *,
        contrastive_channels: int,
        decode: bool,
        recon_reaches_y: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = autoencoder.encoder
        self.decoder = autoencoder.decoder if decode else None
        self.head, self.contrastive_channels = head, contrastive_channels
        self.recon_reaches_y = recon_reaches_y or head is None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        z = self.encoder(x)
        if self.head is None:
            return z, self.decoder(z) if self.decoder is not None else None, None
        y, y_hat = split_latent(z, self.contrastive_channels)
        decoded = z if self.recon_reaches_y else torch.cat([y.detach(), y_hat], dim=1)
        x_hat = self.decoder(decoded) if self.decoder is not None else None
        return z, x_hat, F.normalize(self.head(y).float(), dim=1)


class HybridStep:
    """``step(batch, generator=g, lr=…)``: one optimisation step on a float batch (B, 3, 32, 32) in [0, 1]."""

    def __init__(
        self,
        autoencoder: Autoencoder,
        moco: MoCo | None,
        optimizer: torch.optim.Optimizer,
        *,
        alpha: float,
        grad_clip: float,
        autoencoder_views: AutoencoderViews = "flip",
        recon_reaches_y: bool = True,
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
        head, channels = (None, 0) if moco is None else (moco.head_q, moco.contrastive_channels)
        decode = moco is None or alpha > 0.0
        self.query_side: nn.Module = QuerySide(
            autoencoder, head, contrastive_channels=channels, decode=decode, recon_reaches_y=recon_reaches_y
        )
        if group is not None:
            self._distribute(group, compile=compile)
        self.guard = FiniteGuard(optimizer=optimizer, named_params=named, terms=terms, across_ranks=group)
        self.losses = torch.compile(self._losses) if compile and group is None else self._losses

    def _distribute(self, group: RankGroup, *, compile: bool) -> None:
        """DDP around the query side (buffers per rank), shuffle-BN across ranks, RunningNorm over all ranks."""
        # torch 2.14 renames broadcast_buffers (deprecated there) to forward_sync_buffers; 2.11 has only the former
        sync = "forward_sync_buffers" if "forward_sync_buffers" in _DDP_ARGS else "broadcast_buffers"
        devices = [group.device.index] if group.device.type == "cuda" else None
        ddp = DistributedDataParallel(self.query_side, device_ids=devices, **{sync: False})
        self.query_side = torch.compile(ddp) if compile else ddp
        if self.moco is not None:
            self.moco.key_shuffle = CrossRankShuffle(group, views=2 if self.moco.symmetric else 1)
            sync_running_norms(self.moco, group)

    def views(
        self, batch: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(query images, key images, key permutation), drawn for the whole global batch on every rank."""
        n, device = batch.shape[0], batch.device
        rows = slice(None)
        if self.group is not None:
            n *= self.group.world_size
            rows = self.group.shard(n)

        def moco_view() -> torch.Tensor:  # this rank's rows of one MoCo-v2 view of the global batch
            return apply_moco(batch, draw_moco_params(n, batch.shape[-1], generator=generator, device=device)[rows])

        if self.moco is None:
            if self.autoencoder_views == "flip":
                batch = apply_flips(batch, draw_flips(n, generator=generator, device=device)[rows])
            elif self.autoencoder_views == "moco":
                batch = moco_view()
            return self._layout(batch), None, None
        v1, v2 = moco_view(), moco_view()
        perm = self.moco.key_permutation(n, generator=generator, device=device)
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
            group["lr"] = lr * group.get("lr_scale", 1.0)
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
