"""The per-step hook that trainers call; monitoring and storage plug in here, the core stays unaware."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


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
    gpu_mem_bytes: int | None = None  # peak CUDA memory allocated, None on CPU
    ranks: int = 1  # processes training together (DDP ranks); the numbers above are the global batch's
    rank_gpu_mem_bytes: list[int] | None = None  # peak CUDA memory of each rank (rank order) in a distributed CUDA run


class CallbackList:
    """Fan one event out to many callbacks, each implementing any of on_step, on_checkpoint and on_eval."""

    def __init__(self, callbacks: Iterable[object] = ()) -> None:
        self._callbacks = list(callbacks)

    def _emit(self, hook: str, *args: object) -> None:
        for cb in self._callbacks:
            if hasattr(cb, hook):
                getattr(cb, hook)(*args)

    def on_step(self, metrics: StepMetrics) -> None:
        self._emit("on_step", metrics)

    def on_checkpoint(self, path: Path, step: int) -> None:
        self._emit("on_checkpoint", path, step)

    def on_eval(self, name: str, value: float, step: int) -> None:
        self._emit("on_eval", name, value, step)
