"""The per-step hook that trainers call; monitoring and storage plug in here, the core stays unaware."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol


@dataclass(frozen=True)
class StepMetrics:
    """What a trainer knows after an optimisation step (averaged since the last report)."""

    stage: str  # "hybrid" or "ddim"
    step: int  # optimisation steps completed
    epoch: float  # passes over the train split completed (fractional)
    loss: float  # total loss
    terms: dict[str, float] = field(default_factory=dict)  # each loss term, e.g. {"recon": .., "infonce": ..}
    lr: float = 0.0
    images_per_s: float = 0.0
    step_time_s: float = 0.0  # mean wall time of one step since the last report
    steps_in_report: int = 1  # how many steps step_time_s averages over
    skipped_steps: int = 0  # updates skipped as non-finite so far in the run (train.on_nonfinite = skip_step)
    gpu_mem_bytes: int | None = None  # peak CUDA memory allocated, None on CPU
    ranks: int = 1  # processes training together (DDP ranks); the numbers above are the global batch's
    rank_gpu_mem_bytes: list[int] | None = None  # peak CUDA memory of each rank (rank order) in a distributed CUDA run


class TrainCallback(Protocol):
    def on_step(self, metrics: StepMetrics) -> None: ...

    def on_checkpoint(self, path: Path, step: int) -> None: ...

    def on_eval(self, name: str, value: float, step: int) -> None: ...


class CallbackList:
    """Fan one event out to many callbacks (any of them may implement only some hooks)."""

    def __init__(self, callbacks: Iterable[object] = ()) -> None:
        self._callbacks = list(callbacks)

    def on_step(self, metrics: StepMetrics) -> None:
        for cb in self._callbacks:
            if hasattr(cb, "on_step"):
                cb.on_step(metrics)

    def on_checkpoint(self, path: Path, step: int) -> None:
        for cb in self._callbacks:
            if hasattr(cb, "on_checkpoint"):
                cb.on_checkpoint(path, step)

    def on_eval(self, name: str, value: float, step: int) -> None:
        for cb in self._callbacks:
            if hasattr(cb, "on_eval"):
                cb.on_eval(name, value, step)
