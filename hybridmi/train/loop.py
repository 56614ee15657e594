"""The step loop both trainers share: resume, batch order, reports, finite checks, checkpoints, time budget."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm

from hybridmi.config import Config, DDIMTrainConfig, RuntimeConfig, TrainConfig
from hybridmi.data.loader import epoch_permutation
from hybridmi.errors import Preempted
from hybridmi.runtime import choose_device, rng_state, set_rng_state, stop_requested, stoppable
from hybridmi.train import checkpoint as checkpoints
from hybridmi.train.callbacks import CallbackList, StepMetrics
from hybridmi.train.distributed import RankGroup
from hybridmi.train.guard import FiniteGuard, NonFiniteError, first_nonfinite
from hybridmi.train.history import Row, history_row
from hybridmi.train.schedule import RunLength

log = logging.getLogger(__name__)
PROGRESS_BAR = dict(unit="step", dynamic_ncols=True, mininterval=1.0)


def training_device(runtime: RuntimeConfig, group: RankGroup | None = None) -> torch.device:
    """The device a trainer runs on (the rank's own in a distributed run), after setting the CPU threads."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    return choose_device(runtime.device) if group is None else group.device


def checkpoint_config(cfg: Config, **shape: Any) -> dict[str, Any]:
    """The config a checkpoint records: the full dump plus the identity sections it is resumed against."""
    view = {**cfg.model_dump(mode="json"), **cfg.training_identity()}
    view["ddim_shape"] = {**view["ddim_shape"], **shape}
    return view


class TrainLoop:
    """One trainer's run over n items; ``settings`` (config section ``section``) gives batch, seed and intervals."""

    def __init__(
        self,
        *,
        kind: str,
        out_dir: str | Path,
        config: dict[str, Any],
        length: RunLength,
        n: int,
        section: str,
        settings: TrainConfig | DDIMTrainConfig,
        device: torch.device,
        callbacks: Iterable[object] = (),
        clock: Callable[[], float] = time.perf_counter,
        group: RankGroup | None = None,
    ) -> None:
        self.n, self.batch_size, self.seed = n, settings.batch_size, settings.seed
        self.steps_per_epoch = n // self.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{n} training items are fewer than {section}.batch_size {self.batch_size}")
        self.kind, self.out_dir, self.config, self.length = kind, Path(out_dir), config, length
        self.log_every, self.checkpoint_every = settings.log_every, settings.checkpoint_every
        self.device, self.clock, self.group = device, clock, group
        self.main = group is None or group.main
        self.events = CallbackList(callbacks if self.main else ())
        self.step, self.prior_seconds, self.last = 0, 0.0, None
        self.history: list[Row] = []  # every progress report of the run, kept in its checkpoints
        self.resumed_from = self.path = None  # path: the last checkpoint written or resumed from
        self._perm_epoch, self._perm = -1, torch.empty(0)

    def resume(self, *, sections: tuple[str, ...]) -> dict[str, Any] | None:
        """The latest checkpoint's state (None: none), checked against ``sections``; restores RNG and counters."""
        if self.main:
            checkpoints.sweep_temporary(self.out_dir)
        ckpt = checkpoints.latest_checkpoint(self.out_dir) if self.main else None
        where = self.device if self.group is None else "cpu"
        state = checkpoints.load_checkpoint(ckpt, kind=self.kind, map_location=where) if ckpt else None
        if self.group is not None:
            ckpt, state = self.group.broadcast((ckpt, state))
        if state is None:
            return None
        checkpoints.check_resumable(state["config"], self.config, sections=sections)
        set_rng_state(state["rng"])
        self.step, self.prior_seconds = state["step"], float(state.get("train_seconds", 0.0))
        self.last = StepMetrics(**state["last_metrics"]) if state.get("last_metrics") else None
        self.history = list(state.get("history", ()))  # the reports up to the checkpoint's step
        self.length = RunLength.resume(state.get("run_length"), self.length)
        self.resumed_from = self.path = ckpt
        if self.main:
            log.info("resumed from %s at step %d of %s", ckpt, self.step, self.length.total_steps or "a time budget")
        return state

    def batch_indices(self, step: int) -> torch.Tensor:
        """Rows of the global batch of ``step``: a permutation seeded by (seed, epoch), on the device."""
        epoch, index = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm, self._perm_epoch = epoch_permutation(self.n, seed=self.seed, epoch=epoch).to(self.device), epoch
        return self._perm[index * self.batch_size : (index + 1) * self.batch_size]

    def elapsed(self) -> float:
        return self.prior_seconds + self.clock() - self._start

    def checkpoint(self, state: dict[str, Any], *, modules: Iterable[nn.Module] = (), **extra: Any) -> Path | None:
        """Write ``state`` (refused when any tensor is not finite) with the loop's counters; None on ranks ≠ 0."""
        if self.group is not None:  # BatchNorm statistics: the mean over ranks (the one-process value for split BN)
            self.group.average_({id(b): b for m in modules for b in m.buffers()}.values())
            if not self.group.main:
                return None
        bad = first_nonfinite(state)
        if bad is not None:
            raise NonFiniteError(
                f"refusing to write the {self.kind} checkpoint of step {self.step}: {bad} is not finite; "
                f"last good checkpoint: {self.path}"
            )
        last = dataclasses.asdict(self.last) if self.last else None
        meta = dict(kind=self.kind, step=self.step, config=self.config, rng=rng_state(), train_seconds=self.elapsed())
        meta |= dict(run_length=self.length.as_dict(), last_metrics=last, history=self.history)
        saved = checkpoints.save_checkpoint(self.out_dir, **meta, **state, **extra)
        self.events.on_checkpoint(saved, self.step)
        return saved

    def run(
        self,
        step_fn: Callable[[int], None],
        save: Callable[[], Path | None],
        *,
        guard: FiniteGuard,
        optimizer: torch.optim.Optimizer,
        end_step: int | None = None,
        monitor: Callable[[int], None] | None = None,
        monitor_every: int = 0,
    ) -> None:
        """Run ``step_fn(step)`` to the run length (or ``end_step``); on SIGTERM save, then raise Preempted."""
        guard.first_step = self.step
        self._start = self.clock()
        self._window = (0, {}, self.clock())  # steps, loss sums, start time of the report window
        self._timing_mark: tuple[int, float] | None = None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        written = False

        def total() -> int | None:
            ends = [s for s in (self.length.total_steps, end_step) if s is not None]
            return min(ends) if ends else None

        bar = tqdm(total=total(), initial=self.step, desc=self.kind, disable=not self.main, **PROGRESS_BAR)
        with stoppable():
            while total() is None or self.step < total():
                step_fn(self.step)
                self.step += 1
                bar.update(1)
                stop, end = self._stop_agreed(), total()
                report = self.step % self.log_every == 0 or self.step == end or stop
                saving = self.step % self.checkpoint_every == 0 or self.step == end
                monitoring = monitor is not None and monitor_every and self.step % monitor_every == 0
                timing = self._timing_due()
                if not (report or saving or timing or monitoring):
                    continue
                self._read(guard, timing=timing, bar=bar)
                if report:
                    self._report(optimizer, bar)
                if stop:  # SIGTERM: the step in flight is reported, checkpointed, and the run stops
                    bar.close()
                    self._stop(save)
                if monitoring and self.main:
                    monitor(self.step)
                if saving:
                    self.path, written = save(), True
        bar.close()
        if not written and self.resumed_from is None:  # (a loop that ran always saved at its last step)
            self.path = save()

    def _stop_agreed(self) -> bool:
        """SIGTERM on this rank (or, distributed, on any rank): every rank stops after the same step."""
        return stop_requested() if self.group is None else self.group.any(stop_requested())

    def _stop(self, save: Callable[[], Path | None]) -> None:
        self.path = save()
        where = f"checkpoint {self.path}" if self.path is not None else "checkpoint written by rank 0"
        raise Preempted(
            f"{self.kind} stopped by SIGTERM after step {self.step}: {where}; rerunning the task resumes from it"
        )

    def _timing_due(self) -> bool:
        """Whether a time-budgeted run measures its step time at this step (twice: a mark, then the estimate)."""
        length, mark = self.length, self._timing_mark
        if length.total_steps is not None:
            return False
        if mark is None:
            return self.step >= max(1, length.estimate_from // 2)
        return self.step >= max(length.estimate_from, mark[0] + length.estimate_from // 2)

    def _read(self, guard: FiniteGuard, *, timing: bool, bar: tqdm) -> None:
        """Read the guard's records into the report window (waits for the device); estimate the run length."""
        summary = guard.read(context=f"last good checkpoint: {self.path}")
        steps, sums, start = self._window
        for key, value in summary.means.items():
            sums[key] = sums.get(key, 0.0) + value * summary.steps
        self._window = (steps + summary.steps, sums, start)
        if not timing:
            return
        if self._timing_mark is None:
            self._timing_mark = (self.step, self.clock())
            return
        mark_step, mark_time = self._timing_mark
        step_time = (self.clock() - mark_time) / (self.step - mark_step)
        self.length.estimate(step=self.step, elapsed_s=self.elapsed(), step_time_s=step_time)
        if self.group is not None:  # every rank runs rank 0's number of steps
            self.length = RunLength(**self.group.broadcast(self.length.as_dict()))
        length = self.length
        bar.total = length.total_steps
        measured = f"{length.step_time_s:.3f} s/step measured over steps {mark_step}-{self.step}"
        log.info("time budget %.1f min: %d steps (%s)", length.budget_minutes, length.total_steps, measured)

    def _report(self, optimizer: torch.optim.Optimizer, bar: tqdm) -> None:
        steps, sums, start = self._window
        if not steps:
            return
        seconds = self.clock() - start
        means = {k: v / steps for k, v in sums.items()}
        cuda = self.device.type == "cuda"
        self.last = StepMetrics(
            stage=self.kind,
            step=self.step,
            epoch=self.step / self.steps_per_epoch,
            loss=means.pop("loss"),
            terms=means,
            lr=optimizer.param_groups[0]["lr"],
            images_per_s=steps * self.batch_size / seconds,
            step_time_s=seconds / steps,
            steps_in_report=steps,
            gpu_mem_bytes=torch.cuda.max_memory_allocated(self.device) if cuda else None,
            ranks=self.group.world_size if self.group is not None else 1,
            rank_gpu_mem_bytes=self._rank_memory() if cuda and self.group is not None else None,
        )
        self.history.append(history_row(self.last))
        self.events.on_step(self.last)
        bar.set_postfix({**{k: f"{v:.4g}" for k, v in means.items()}, "img/s": f"{self.last.images_per_s:.0f}"})
        self._window = (0, {}, self.clock())

    def _rank_memory(self) -> list[int]:
        """Peak CUDA memory of every rank, in rank order (a collective)."""
        peaks = self.group.all_gather(torch.tensor([torch.cuda.max_memory_allocated(self.device)], device=self.device))
        return [int(v) for v in peaks.tolist()]
