"""The hybrid trainer: α · reconstruction + (1 − α) · InfoNCE on y; seeded per step, so resumes are bit-identical."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from hybridmi.config import Config
from hybridmi.data.augment import to_float
from hybridmi.data.prepared import Split
from hybridmi.eval.features import encode_split
from hybridmi.eval.knn import knn_accuracy
from hybridmi.models.autoencoder import Autoencoder
from hybridmi.runtime import compute_policy, seed_everything
from hybridmi.train.callbacks import StepMetrics
from hybridmi.train.distributed import RankGroup
from hybridmi.train.hybrid_step import HybridStep, build_models, make_optimizer, trainable
from hybridmi.train.loop import TrainLoop, checkpoint_config, training_device
from hybridmi.train.schedule import RunLength

log = logging.getLogger(__name__)

KIND = "hybrid"
RESUME_SECTIONS = ("data", "model", "objective", "optim", "train_shape")  # must not change across a resume


@dataclass
class HybridResult:
    model: Autoencoder  # the trained autoencoder (the representation f and decoder q)
    step: int  # optimisation steps completed
    checkpoint: Path | None  # the final checkpoint (None on ranks other than 0, which write none)
    last_metrics: StepMetrics | None  # the last progress report
    run_length: dict[str, Any] = field(default_factory=dict)  # RunLength.as_dict(): planned/estimated steps
    compute: dict[str, Any] = field(default_factory=dict)  # ComputePolicy.describe(): precision and layout used
    history: list[dict[str, float]] = field(default_factory=list)  # every progress report (train/history.py)


def train_hybrid(
    cfg: Config,
    train: Split,
    *,
    out_dir: str | Path,
    callbacks: Iterable[object] = (),
    resume: bool = True,
    monitor: Split | None = None,
    clock: Callable[[], float] = time.perf_counter,
    group: RankGroup | None = None,
) -> HybridResult:
    """Train on ``train``, checkpointing to and resuming from ``out_dir``; kNN-monitor y on ``monitor`` if given."""
    t, rt = cfg.train, cfg.runtime
    device = training_device(rt, group)
    rows = slice(0, t.batch_size)  # this process's rows of every global batch
    if group is not None:
        cfg = cfg.with_ranks(group.world_size)  # 'auto' ranks are known only now
        rows = group.shard(t.batch_size)
    steps_per_epoch = len(train.labels) // t.batch_size
    warmup = round(cfg.optim.warmup_epochs * steps_per_epoch)
    length = RunLength.plan(
        epochs=t.epochs, steps_per_epoch=steps_per_epoch, budget_minutes=t.time_budget_minutes, warmup_steps=warmup
    )
    loop = TrainLoop(
        kind=KIND,
        out_dir=out_dir,
        config=checkpoint_config(cfg),
        length=length,
        n=len(train.labels),
        section="train",
        settings=t,
        device=device,
        callbacks=callbacks,
        clock=clock,
        group=group,
    )
    if t.time_budget_minutes is not None:
        log.info("training for %g minutes (train.time_budget_minutes); train.epochs is not used", t.time_budget_minutes)

    seed_everything(t.seed)
    autoencoder, moco = build_models(cfg)
    modules = [m for m in (autoencoder, moco) if m is not None]
    policy = compute_policy("autoencoder", device, precision=rt.precision, channels_last=rt.channels_last)
    log.info("hybrid step on %s: %s", device, policy.describe())
    for module in modules:
        module.to(device, memory_format=torch.channels_last) if policy.channels_last else module.to(device)
    optimizer = make_optimizer(trainable(autoencoder, moco), cfg)
    state = loop.resume(sections=RESUME_SECTIONS) if resume else None
    if state is not None:
        autoencoder.load_state_dict(state["autoencoder"])
        if moco is not None:
            moco.load_state_dict(state["moco"])
        optimizer.load_state_dict(state["optimizer"])
    trainer = HybridStep(
        autoencoder,
        moco,
        optimizer,
        alpha=cfg.objective.alpha,
        grad_clip=cfg.optim.grad_clip,
        autoencoder_views=cfg.objective.autoencoder_views,
        recon_reaches_y=cfg.objective.recon_reaches_y,
        amp=policy.dtype,
        channels_last=policy.channels_last,
        compile=rt.compile,
        group=group,
    )
    images = train.images.to(device)  # uint8, the whole split stays on the device
    generator = torch.Generator(device=device)

    def step(step: int) -> None:
        batch = to_float(images[loop.batch_indices(step)[rows]])
        generator.manual_seed(t.seed * 1_000_003 + step)
        trainer(batch, generator=generator, lr=cfg.optim.lr * loop.length.multiplier(step))

    def save() -> Path | None:
        state = dict(autoencoder=autoencoder.state_dict(), moco=moco.state_dict() if moco is not None else None)
        return loop.checkpoint({**state, "optimizer": optimizer.state_dict()}, modules=modules)

    def knn(step: int) -> None:  # kNN accuracy of y, un-augmented train images as the bank; draws no random numbers
        e, c, encoder = cfg.eval, cfg.model.contrastive_channels, autoencoder.encoder
        bank, queries = (encode_split(encoder, s, batch_size=e.batch_size, device=device) for s in (train, monitor))
        bank, queries = (z[:, :c].flatten(1).to(device) for z in (bank, queries))
        neighbours = dict(num_classes=len(train.classes), k=e.knn_k, temperature=e.knn_temperature)
        accuracy = knn_accuracy(bank, train.labels, queries, monitor.labels, **neighbours)
        autoencoder.train()
        loop.events.on_eval("knn_acc_y", accuracy, step)
        log.info("step %d (epoch %d): kNN accuracy of y %.4f", step, step // steps_per_epoch, accuracy)

    autoencoder.train()
    knn_every = t.knn_every * steps_per_epoch
    monitoring = dict(monitor=knn if monitor is not None else None, monitor_every=knn_every)
    loop.run(step, save, guard=trainer.guard, optimizer=optimizer, **monitoring)
    autoencoder.eval()
    length, compute = loop.length.as_dict(), policy.describe()
    return HybridResult(autoencoder, loop.step, loop.path, loop.last, length, compute, loop.history)
