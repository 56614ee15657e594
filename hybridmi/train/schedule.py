"""Learning-rate multipliers and the run length: fixed, or estimated ONCE from a time budget and then checkpointed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

MIN_TIMED_STEPS = 20  # a budgeted run estimates its length no earlier than this step


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int | None) -> float:
    """Multiplier of the peak learning rate: linear 0→1 over ``warmup_steps``, then cosine 1→0 at ``total_steps``
    (None, a budgeted run before its estimate: the peak after the warm-up)."""
    if total_steps is not None and total_steps <= 0:
        raise ValueError(f"total_steps {total_steps} must be positive")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps is None:
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class RunLength:
    """A run's optimisation steps and their origin; a budgeted run holds total_steps None until ``estimate``."""

    warmup_steps: int
    total_steps: int | None
    budget_minutes: float | None = None
    estimated_at_step: int | None = None  # budgeted runs: the step at which total_steps was fixed
    step_time_s: float | None = None  # the measured seconds per step behind the estimate
    elapsed_at_estimate_s: float | None = None  # training seconds spent when it was made

    @classmethod
    def plan(cls, *, epochs: float, steps_per_epoch: int, warmup_steps: int, budget_minutes: float | None) -> RunLength:
        if budget_minutes is None:
            return cls(warmup_steps=warmup_steps, total_steps=max(1, math.ceil(epochs * steps_per_epoch)))
        return cls(warmup_steps=warmup_steps, total_steps=None, budget_minutes=budget_minutes)

    @classmethod
    def resume(cls, saved: dict[str, Any] | None, planned: "RunLength") -> "RunLength":
        """The checkpoint's run length when it was planned the same way (same budget), else ``planned``."""
        if not saved or saved.get("budget_minutes") != planned.budget_minutes or planned.budget_minutes is None:
            return planned
        return cls(**saved)

    @property
    def estimate_from(self) -> int:
        """The earliest step at which a budgeted run estimates its length (after the warm-up)."""
        return max(self.warmup_steps, MIN_TIMED_STEPS)

    def estimate(self, *, step: int, elapsed_s: float, step_time_s: float) -> int:
        """Fix total_steps = step + the steps that fit in the rest of the budget at ``step_time_s`` each."""
        if self.total_steps is not None:
            raise RuntimeError("the run length is already fixed")
        if step_time_s <= 0:
            raise ValueError(f"measured step time {step_time_s} s must be positive")
        remaining = self.budget_minutes * 60.0 - elapsed_s
        self.total_steps = step + max(1, math.floor(remaining / step_time_s))
        self.estimated_at_step, self.step_time_s, self.elapsed_at_estimate_s = step, step_time_s, elapsed_s
        return self.total_steps

    def multiplier(self, step: int) -> float:
        """Learning-rate multiplier for the update that follows ``step`` completed steps."""
        return warmup_cosine(step, warmup_steps=self.warmup_steps, total_steps=self.total_steps)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
