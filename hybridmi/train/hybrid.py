"""The hybrid trainer: α · reconstruction + (1 − α) · InfoNCE on y, one encoder pass per view.

Data lives on the training device as uint8 for the whole run; every batch is augmented there,
per sample, from a generator seeded by (seed, step), and batches come from a permutation seeded
by (seed, epoch). Together with the checkpointed model/optimiser/scheduler/queue/RNG states this
makes a resumed run continue bit-identically on the CPU.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from tqdm import tqdm

from hybridmi.config import Config
from hybridmi.data.augment import moco_augment, to_float
from hybridmi.data.loader import epoch_permutation
from hybridmi.data.prepared import Split
from hybridmi.eval.knn import knn_monitor
from hybridmi.losses import hybrid_loss, reconstruction_loss
from hybridmi.models.autoencoder import Autoencoder
from hybridmi.models.moco import MoCo, ProjectionHead
from hybridmi.runtime import autocast, autocast_dtype, choose_device, rng_state, seed_everything, set_rng_state
from hybridmi.train.callbacks import CallbackList, StepMetrics
from hybridmi.train.checkpoint import check_resumable, latest_checkpoint, load_checkpoint, save_checkpoint
from hybridmi.train.schedule import warmup_cosine

log = logging.getLogger(__name__)

KIND = "hybrid"
# Config sections that must not change between a checkpoint and its resumption.
RESUME_SECTIONS = ("data", "model", "objective", "optim", "train_shape")


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term is NaN/inf; the message names the step and every term."""


@dataclass
class HybridResult:
    model: Autoencoder  # the trained autoencoder (the representation f and decoder q)
    step: int  # optimisation steps completed
    checkpoint: Path  # the final checkpoint
    last_metrics: StepMetrics | None  # the last progress report


def build_models(cfg: Config) -> tuple[Autoencoder, MoCo | None]:
    """The autoencoder and, unless α = 1 (plain autoencoder), the MoCo-v2 wrapper around its encoder."""
    m = cfg.model
    autoencoder = Autoencoder(
        channels=m.channels, cells_32=m.cells_32, cells_16=m.cells_16,
        decoder_expand=m.decoder_expand, latent_channels=m.latent_channels,
    )
    if cfg.objective.alpha >= 1.0:
        return autoencoder, None
    o = cfg.objective
    head = ProjectionHead(m.contrastive_channels * 16 * 16, m.proj_hidden, m.proj_dim)
    moco = MoCo(
        autoencoder.encoder, head, contrastive_channels=m.contrastive_channels, queue_size=o.queue_size,
        momentum=o.momentum, temperature=o.temperature, symmetric=o.symmetric, shuffle_bn=o.shuffle_bn,
    )
    return autoencoder, moco


def _resume_view(cfg: Config) -> dict:
    view = cfg.model_dump(mode="json")
    view["train_shape"] = {"batch_size": cfg.train.batch_size, "seed": cfg.train.seed}
    return view


def make_optimizer(params: list[nn.Parameter], cfg: Config) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay)


def step_losses(
    autoencoder: nn.Module, moco: MoCo | None, v1: torch.Tensor, v2: torch.Tensor, *, alpha: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
    """Loss, its terms and the keys to enqueue for two augmented views v1, v2: (B, 3, 32, 32) in [0, 1]."""
    terms: dict[str, torch.Tensor] = {}
    if moco is None:  # α = 1: the plain autoencoder
        z1, x_hat1 = autoencoder(v1)
        terms["recon"] = reconstruction_loss(x_hat1.float(), v1)
        return terms["recon"], terms, None
    symmetric = moco.symmetric
    if alpha > 0.0:
        z1, x_hat1 = autoencoder(v1)
        recon = reconstruction_loss(x_hat1.float(), v1)
        z2 = None
        if symmetric:
            z2, x_hat2 = autoencoder(v2)
            recon = 0.5 * (recon + reconstruction_loss(x_hat2.float(), v2))
        terms["recon"] = recon
    else:  # α = 0: MoCo-v2 alone, the decoder is never run
        z1 = autoencoder.encode(v1)
        z2 = autoencoder.encode(v2) if symmetric else None
    moco.momentum_update()
    terms["infonce"], keys = moco.forward_contrastive(z1, z2, v1, v2)
    loss = hybrid_loss(terms.get("recon"), terms["infonce"], alpha=alpha)
    return loss, terms, keys


def train_hybrid(
    cfg: Config, train: Split, *, out_dir: str | Path, callbacks: Iterable[object] = (), resume: bool = True,
    monitor: Split | None = None,
) -> HybridResult:
    """Train the hybrid representation on ``train``; checkpoints go to ``out_dir``.

    Resumes from ``out_dir/last.pt`` when present (and ``resume``). Raises NonFiniteLossError
    on a NaN/inf loss without touching the last checkpoint. With ``monitor`` (a held-out split) and
    ``train.knn_every`` > 0, the kNN accuracy of y is reported every that many epochs (``on_eval``).
    """
    out_dir = Path(out_dir)
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = choose_device(t.device)
    amp = autocast_dtype(t.precision, device)
    n = len(train.labels)
    steps_per_epoch = n // t.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"train split has {n} images, fewer than train.batch_size {t.batch_size}")
    total_steps = max(1, math.ceil(t.epochs * steps_per_epoch))
    warmup_steps = round(cfg.optim.warmup_epochs * steps_per_epoch)

    seed_everything(t.seed)
    autoencoder, moco = build_models(cfg)
    autoencoder.to(device)
    if moco is not None:
        moco.check_batch_size(t.batch_size)
        moco.to(device)
    if device.type == "cuda" and t.channels_last:
        autoencoder.to(memory_format=torch.channels_last)
    params = list(autoencoder.parameters()) + (list(moco.head_q.parameters()) if moco is not None else [])
    optimizer = make_optimizer(params, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup_steps=warmup_steps, total_steps=total_steps)
    )
    step = 0
    ckpt = latest_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, kind=KIND, map_location=device)
        check_resumable(state["config"], _resume_view(cfg), sections=RESUME_SECTIONS)
        autoencoder.load_state_dict(state["autoencoder"])
        if moco is not None:
            moco.load_state_dict(state["moco"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step = state["step"]
        log.info("resumed from %s at step %d of %d", ckpt, step, total_steps)
    forward = torch.compile(autoencoder) if t.compile else autoencoder

    images = train.images.to(device)  # uint8, the whole split stays on the device
    events = CallbackList(callbacks)

    def checkpoint() -> Path:
        path = save_checkpoint(
            out_dir, kind=KIND, step=step, config=_resume_view(cfg), autoencoder=autoencoder.state_dict(),
            moco=moco.state_dict() if moco is not None else None, optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(), rng=rng_state(),
        )
        events.on_checkpoint(path, step)
        return path

    autoencoder.train()
    last: StepMetrics | None = None
    sums: dict[str, torch.Tensor] = {}
    window_start, window_steps = time.perf_counter(), 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    perm_epoch, perm = -1, None
    bar = tqdm(total=total_steps, initial=step, desc="hybrid", unit="step", dynamic_ncols=True, mininterval=1.0)
    path = latest_checkpoint(out_dir)
    while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = epoch_permutation(n, seed=t.seed, epoch=epoch).to(device), epoch
        batch = to_float(images[perm[index * t.batch_size:(index + 1) * t.batch_size]])
        gen = torch.Generator(device=device).manual_seed(t.seed * 1_000_003 + step)
        v1, v2 = moco_augment(batch, generator=gen), moco_augment(batch, generator=gen)
        if device.type == "cuda" and t.channels_last:
            v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            loss, terms, keys = step_losses(forward, moco, v1, v2, alpha=cfg.objective.alpha)
        if not torch.isfinite(loss):
            detail = ", ".join(f"{k}={v.item():.6g}" for k, v in terms.items())
            raise NonFiniteLossError(f"non-finite loss at step {step + 1}: loss={loss.item():.6g} ({detail}); "
                                     f"last good checkpoint: {path}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        if keys is not None:
            moco.enqueue(keys)
        step += 1
        window_steps += 1
        for key, value in {"loss": loss, **terms}.items():
            sums[key] = sums.get(key, 0.0) + value.detach().float()
        if step % t.log_every == 0 or step == total_steps:
            elapsed = time.perf_counter() - window_start
            means = {k: float(v) / window_steps for k, v in sums.items()}
            last = StepMetrics(
                stage=KIND, step=step, epoch=step / steps_per_epoch, loss=means.pop("loss"), terms=means,
                lr=scheduler.get_last_lr()[0], images_per_s=window_steps * t.batch_size / elapsed,
                step_time_s=elapsed / window_steps, steps_in_report=window_steps,
                gpu_mem_bytes=torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
            )
            events.on_step(last)
            bar.set_postfix({**{k: f"{v:.4g}" for k, v in means.items()}, "img/s": f"{last.images_per_s:.0f}"})
            sums, window_start, window_steps = {}, time.perf_counter(), 0
        bar.update(1)
        if monitor is not None and t.knn_every and step % (t.knn_every * steps_per_epoch) == 0:
            accuracy = knn_monitor(
                autoencoder.encoder, train, monitor, contrastive_channels=cfg.model.contrastive_channels,
                batch_size=cfg.eval.batch_size, device=device, k=cfg.eval.knn_k, temperature=cfg.eval.knn_temperature,
            )
            autoencoder.train()
            events.on_eval("knn_acc_y", accuracy, step)
            log.info("step %d (epoch %d): kNN accuracy of y %.4f", step, step // steps_per_epoch, accuracy)
        if step % t.checkpoint_every == 0 or step == total_steps:
            path = checkpoint()
    bar.close()
    if path is None:  # resumed at the very end: nothing new to save
        path = checkpoint()
    autoencoder.eval()
    return HybridResult(model=autoencoder, step=step, checkpoint=path, last_metrics=last)
