"""Exponential backoff for transient storage errors (the policy is data; the loop is one function)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the wait before try k+1 is min(base_delay_s * 2**(k-1), max_delay_s) seconds."""

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts {self.attempts} must be >= 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(f"retry delays ({self.base_delay_s}, {self.max_delay_s}) must be >= 0 seconds")

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)


class TransientError(Exception):
    """Raised by a guarded call to say 'this may work if tried again'; carries a short reason."""


def call_with_retry(
    fn: Callable[[], T], *, policy: RetryPolicy, what: str, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Call ``fn`` until it returns or raises something other than TransientError; re-raise the last
    TransientError after ``policy.attempts`` tries. ``what`` names the operation in log lines."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except TransientError as exc:
            if attempt == policy.attempts:
                raise
            delay = policy.delay_s(attempt)
            log.warning("%s failed (%s); retry %d/%d in %.2f s", what, exc, attempt, policy.attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")
