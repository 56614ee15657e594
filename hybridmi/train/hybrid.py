"""The hybrid trainer: α · reconstruction + (1 − α) · InfoNCE on y, one encoder pass per step.

Data lives on the training device as uint8 for the whole run; every batch is augmented there,
per sample, from a generator seeded by (seed, step), and batches come from a permutation seeded
by (seed, epoch). Together with the checkpointed model/optimiser/queue/RNG states and the run length
this makes a resumed run continue bit-identically on the CPU.

The steps themselves (``HybridStep``) never wait for the device; this loop reads the device-side
finite checks every ``train.log_every`` steps and before every checkpoint, and checks the whole state
finite before writing it, so the last checkpoint on disk is always loadable and finite.

With a ``RankGroup`` (``hybridmi.train.distributed``) this is one rank of a DistributedDataParallel run:
it trains on its rows of every global batch; rank 0 alone reads and writes checkpoints (a resumed
state reaches the other ranks by broadcast), reports and runs the kNN monitor; all ranks take the
time budget's estimate from rank 0 and average BatchNorm statistics before each checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from tqdm import tqdm

from hybridmi.config import Config
from hybridmi.data.augment import to_float
from hybridmi.data.loader import epoch_permutation
from hybridmi.data.prepared import Split
from hybridmi.eval.knn import knn_monitor
from hybridmi.models.autoencoder import Autoencoder
from hybridmi.runtime import autocast_dtype, choose_device, rng_state, seed_everything, set_rng_state
from hybridmi.train.callbacks import CallbackList, StepMetrics
from hybridmi.train.checkpoint import check_resumable, latest_checkpoint, load_checkpoint, save_checkpoint
from hybridmi.train.distributed import RankGroup, check_batch_split
from hybridmi.train.guard import NonFiniteError, WindowSummary, first_nonfinite
from hybridmi.train.hybrid_step import HybridStep, bn_group_size, build_models, make_optimizer, trainable
from hybridmi.train.schedule import RunLength

log = logging.getLogger(__name__)

KIND = "hybrid"
# Config sections that must not change between a checkpoint and its resumption.
RESUME_SECTIONS = ("data", "model", "objective", "optim", "train_shape")
NonFiniteLossError = NonFiniteError  # the name earlier callers import

__all__ = ["HybridResult", "NonFiniteError", "NonFiniteLossError", "build_models", "make_optimizer", "train_hybrid"]


@dataclass
class HybridResult:
    model: Autoencoder  # the trained autoencoder (the representation f and decoder q)
    step: int  # optimisation steps completed
    checkpoint: Path | None  # the final checkpoint (None on ranks other than 0, which write none)
    last_metrics: StepMetrics | None  # the last progress report
    run_length: dict[str, Any] = field(default_factory=dict)  # RunLength.as_dict(): planned/estimated steps
    skipped_steps: int = 0  # updates skipped as non-finite (train.on_nonfinite = skip_step)


def _resume_view(cfg: Config) -> dict:
    view = cfg.model_dump(mode="json")
    view["train_shape"] = {"batch_size": cfg.train.batch_size, "seed": cfg.train.seed}
    return view


class _Window:
    """Host-side sums of the summaries read since the last report."""

    def __init__(self) -> None:
        self.steps, self.skipped, self.sums, self.counts = 0, 0, {}, {}

    def add(self, s: WindowSummary) -> None:
        applied = s.steps - s.skipped
        self.steps, self.skipped = self.steps + s.steps, self.skipped + s.skipped
        for key, value in s.means.items():
            if applied:
                self.sums[key] = self.sums.get(key, 0.0) + value * applied
                self.counts[key] = self.counts.get(key, 0) + applied

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


def rank_memory(group: RankGroup | None, device: torch.device) -> list[int] | None:
    """Peak CUDA memory of every rank (rank order) in a distributed CUDA run, else None; a collective."""
    if group is None or device.type != "cuda":
        return None
    peaks = group.all_gather(torch.tensor([torch.cuda.max_memory_allocated(device)], device=device))
    return [int(v) for v in peaks.tolist()]


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
    """Train the hybrid representation on ``train``; checkpoints go to ``out_dir``.

    Resumes from ``out_dir/last.pt`` when present (and ``resume``). A NaN/inf loss, gradient or weight
    raises NonFiniteError naming the step and the first non-finite tensor (or, with
    ``train.on_nonfinite=skip_step``, skips that update); no checkpoint is written after it. With
    ``monitor`` (a held-out split) and ``train.knn_every`` > 0, the kNN accuracy of y is reported every
    that many epochs (``on_eval``). ``clock`` (seconds) times the run and the time budget. With ``group``
    this process is one rank of a distributed run on ``group.device`` (see the module docstring); only
    rank 0 touches ``out_dir`` and calls ``callbacks``.
    """
    out_dir = Path(out_dir)
    t = cfg.train
    main = group is None or group.main
    if t.threads:
        torch.set_num_threads(t.threads)
    device = choose_device(t.device) if group is None else group.device
    n = len(train.labels)
    steps_per_epoch = n // t.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"train split has {n} images, fewer than train.batch_size {t.batch_size}")
    rows = slice(0, t.batch_size)  # this process's rows of every global batch
    if group is not None:
        check_batch_split(t.batch_size, group.world_size, bn_group_size(cfg))
        rows = group.shard(t.batch_size)
    length = RunLength.plan(
        epochs=t.epochs,
        steps_per_epoch=steps_per_epoch,
        budget_minutes=t.time_budget_minutes,
        warmup_steps=round(cfg.optim.warmup_epochs * steps_per_epoch),
    )
    if t.time_budget_minutes is not None:
        log.info(
            "training for %g minutes (train.time_budget_minutes); train.epochs %g is not used",
            t.time_budget_minutes,
            t.epochs,
        )

    seed_everything(t.seed)
    autoencoder, moco = build_models(cfg)
    channels_last = device.type == "cuda" and t.channels_last
    for module in (autoencoder, moco):
        if module is not None:
            module.to(device, memory_format=torch.channels_last) if channels_last else module.to(device)
    if moco is not None:
        moco.check_batch_size(t.batch_size)
    optimizer = make_optimizer([p for _, p in trainable(autoencoder, moco)], cfg)
    step, prior_seconds, last = 0, 0.0, None
    ckpt = latest_checkpoint(out_dir) if resume and main else None
    state = load_checkpoint(ckpt, kind=KIND, map_location=device if group is None else "cpu") if ckpt else None
    if group is not None:  # the other ranks resume from rank 0's checkpoint, wherever it was read
        ckpt, state = group.broadcast((ckpt, state))
    if state is not None:
        check_resumable(state["config"], _resume_view(cfg), sections=RESUME_SECTIONS)
        autoencoder.load_state_dict(state["autoencoder"])
        if moco is not None:
            moco.load_state_dict(state["moco"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step, prior_seconds = state["step"], float(state.get("train_seconds", 0.0))
        last = StepMetrics(**state["last_metrics"]) if state.get("last_metrics") else None
        length = RunLength.resume(state.get("run_length"), length)
        if main:
            log.info("resumed from %s at step %d of %s", ckpt, step, length.total_steps or "a time budget")
    trainer = HybridStep(
        autoencoder,
        moco,
        optimizer,
        alpha=cfg.objective.alpha,
        grad_clip=cfg.optim.grad_clip,
        on_nonfinite=t.on_nonfinite,
        autoencoder_views=cfg.objective.autoencoder_views,
        amp=autocast_dtype(t.precision, device),
        channels_last=channels_last,
        compile=t.compile,
        group=group,
    )
    trainer.guard.first_step = step
    images = train.images.to(device)  # uint8, the whole split stays on the device
    generator = torch.Generator(device=device)
    events = CallbackList(callbacks if main else ())
    path, written = ckpt, False
    start = clock()

    def elapsed() -> float:
        return prior_seconds + clock() - start

    def checkpoint() -> Path | None:
        if group is not None:  # BatchNorm statistics: the mean over ranks (the one-process value for split BN)
            buffers = {id(b): b for m in (autoencoder, moco) if m is not None for b in m.buffers()}  # encoder_q: shared
            group.average_(buffers.values())
            if not group.main:
                return None
        state = dict(
            autoencoder=autoencoder.state_dict(),
            moco=moco.state_dict() if moco is not None else None,
            optimizer=optimizer.state_dict(),
        )
        bad = first_nonfinite(state)
        if bad is not None:
            raise NonFiniteError(
                f"refusing to write the checkpoint of step {step}: {bad} is not finite; last good checkpoint: {path}"
            )
        saved = save_checkpoint(
            out_dir,
            kind=KIND,
            step=step,
            config=_resume_view(cfg),
            rng=rng_state(),
            run_length=length.as_dict(),
            train_seconds=elapsed(),
            skipped_steps=trainer.guard.skipped_total,
            last_metrics=dataclasses.asdict(last) if last is not None else None,
            **state,
        )
        events.on_checkpoint(saved, step)
        return saved

    autoencoder.train()
    window, window_start = _Window(), clock()
    timing_mark: tuple[int, float] | None = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    perm_epoch, perm = -1, None
    bar = tqdm(
        total=length.total_steps,
        initial=step,
        desc="hybrid",
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        disable=not main,
    )
    while length.total_steps is None or step < length.total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = epoch_permutation(n, seed=t.seed, epoch=epoch).to(device), epoch
        batch = to_float(images[perm[index * t.batch_size : (index + 1) * t.batch_size][rows]])
        generator.manual_seed(t.seed * 1_000_003 + step)
        trainer(batch, generator=generator, lr=cfg.optim.lr * length.multiplier(step))
        step += 1
        bar.update(1)
        timing = length.total_steps is None and (
            step >= max(1, length.estimate_from // 2)
            if timing_mark is None
            else step >= max(length.estimate_from, timing_mark[0] + length.estimate_from // 2)
        )
        report = step % t.log_every == 0 or step == length.total_steps
        save = step % t.checkpoint_every == 0 or step == length.total_steps
        knn = monitor is not None and t.knn_every and step % (t.knn_every * steps_per_epoch) == 0
        if not (report or save or timing or knn):
            continue
        window.add(trainer.guard.read(context=f"last good checkpoint: {path}"))  # waits for the device
        if timing and timing_mark is None:
            timing_mark = (step, clock())
        elif timing:
            total = length.estimate(
                step=step, elapsed_s=elapsed(), step_time_s=(clock() - timing_mark[1]) / (step - timing_mark[0])
            )
            if group is not None:  # every rank runs rank 0's number of steps
                length = RunLength(**group.broadcast(length.as_dict()))
                total = length.total_steps
            bar.total = total
            log.info(
                "time budget %.1f min: %d steps (%.3f s/step measured over steps %d-%d)",
                length.budget_minutes,
                total,
                length.step_time_s,
                timing_mark[0],
                step,
            )
        if report and window.steps:
            seconds = clock() - window_start
            means = window.means()
            last = StepMetrics(
                stage=KIND,
                step=step,
                epoch=step / steps_per_epoch,
                loss=means.pop("loss", float("nan")),
                terms=means,
                lr=optimizer.param_groups[0]["lr"],
                images_per_s=window.steps * t.batch_size / seconds,
                step_time_s=seconds / window.steps,
                steps_in_report=window.steps,
                skipped_steps=trainer.guard.skipped_total,
                gpu_mem_bytes=torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
                ranks=group.world_size if group is not None else 1,
                rank_gpu_mem_bytes=rank_memory(group, device),
            )
            events.on_step(last)
            bar.set_postfix({**{k: f"{v:.4g}" for k, v in means.items()}, "img/s": f"{last.images_per_s:.0f}"})
            window, window_start = _Window(), clock()
        if knn and main:
            accuracy = knn_monitor(
                autoencoder.encoder,
                train,
                monitor,
                contrastive_channels=cfg.model.contrastive_channels,
                batch_size=cfg.eval.batch_size,
                device=device,
                k=cfg.eval.knn_k,
                temperature=cfg.eval.knn_temperature,
            )
            autoencoder.train()
            events.on_eval("knn_acc_y", accuracy, step)
            log.info("step %d (epoch %d): kNN accuracy of y %.4f", step, step // steps_per_epoch, accuracy)
        if save:
            path, written = checkpoint(), True
    bar.close()
    if not written and ckpt is None:  # (a loop that ran always saved at its last step)
        path = checkpoint()
    autoencoder.eval()
    return HybridResult(
        model=autoencoder,
        step=step,
        checkpoint=path,
        last_metrics=last,
        run_length=length.as_dict(),
        skipped_steps=trainer.guard.skipped_total,
    )
