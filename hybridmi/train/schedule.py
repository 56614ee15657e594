"""Learning-rate multipliers (pure functions of the step), wrapped by torch's LambdaLR."""
from __future__ import annotations

import math


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate: linear 0→1 over ``warmup_steps``, then cosine 1→0 at ``total_steps``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps {total_steps} must be positive")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
