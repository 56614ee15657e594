"""A TrainJob's state from its status (pure), and the wait for a final one that logs every change."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from hybridmi.errors import HybridmiError, TaskFailed

log = logging.getLogger(__name__)

CREATED, RUNNING, SUSPENDED, COMPLETE, FAILED = "Created", "Running", "Suspended", "Complete", "Failed"
_COUNTS = ("active", "ready", "succeeded", "failed")


class TrainJobFailed(TaskFailed):
    """The TrainJob ended Failed; the message is one line with its reason."""


class KubeUnreachable(HybridmiError, RuntimeError):
    """The Kubernetes API could not be reached for longer than the wait allows."""


@dataclass(frozen=True)
class TrainJobState:
    phase: str
    conditions: tuple[str, ...]  # "Type=Status (Reason: message)" of every condition, in the object's order
    jobs: str  # "node: 1 active, 1 ready, 0 succeeded, 0 failed"
    reason: str = ""  # the Failed (or Complete) condition's "Reason: message"

    def describe(self) -> str:
        return "; ".join(p for p in (self.phase, self.jobs, *self.conditions) if p)


def _detail(condition: Mapping[str, Any]) -> str:
    """A condition's "Reason: message" on one line."""
    message = " ".join(str(condition.get("message", "")).split())
    return ": ".join(p for p in (condition.get("reason", ""), message) if p)


def trainjob_state(obj: Mapping[str, Any]) -> TrainJobState:
    """The phase of a TrainJob object (a dict as the API returns it) with its conditions and child-job counts."""
    status = obj.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    true = {c.get("type"): c for c in conditions if c.get("status") == "True"}
    jobs = [j for j in status.get("jobsStatus") or [] if isinstance(j, Mapping)]
    counts = "; ".join(f"{j.get('name')}: " + ", ".join(f"{int(j.get(k) or 0)} {k}" for k in _COUNTS) for j in jobs)
    texts = tuple(f"{c.get('type')}={c.get('status')}" + (f" ({d})" if (d := _detail(c)) else "") for c in conditions)
    for phase in (FAILED, COMPLETE):  # Failed wins: a deadline can fail a job the JobSet still calls running
        if phase in true:
            return TrainJobState(phase, texts, counts, _detail(true[phase]))
    if SUSPENDED in true:
        return TrainJobState(SUSPENDED, texts, counts)
    running = any(int(j.get("active") or 0) + int(j.get("ready") or 0) > 0 for j in jobs)
    return TrainJobState(RUNNING if running else CREATED, texts, counts)


def wait_for_trainjob(
    get: Callable[[], Mapping[str, Any] | None], *, name: str, poll_s: float = 10.0, unreachable_s: float = 300.0
) -> TrainJobState:
    """Poll ``get`` (the TrainJob object, None once deleted) until a final phase; log each change of state.
    OSError (ApiUnavailable) is retried for up to ``unreachable_s``, then KubeUnreachable."""
    last: TrainJobState | None = None
    down_since: float | None = None
    while True:
        try:
            obj = get()
        except OSError as exc:
            now = time.monotonic()
            if down_since is None:
                down_since = now
                why, retry = " ".join(str(exc).split())[:200], f"retrying for {unreachable_s:.0f} s"
                log.warning("TrainJob %s: the Kubernetes API does not answer (%s); %s", name, why, retry)
            elif now - down_since > unreachable_s:
                raise KubeUnreachable(
                    f"the Kubernetes API did not answer for {now - down_since:.0f} s while the train step waited for "
                    f"TrainJob {name}, which may still be running (kubectl get trainjob {name})"
                ) from None
            time.sleep(poll_s)
            continue
        if down_since is not None:
            log.info("TrainJob %s: the Kubernetes API answers again", name)
            down_since = None
        if obj is None:
            raise TrainJobFailed(f"TrainJob {name} was deleted before it finished")
        state = trainjob_state(obj)
        if state != last:
            log.info("TrainJob %s: %s", name, state.describe())
            last = state
        if state.phase == FAILED:
            raise TrainJobFailed(f"TrainJob {name} failed: {state.reason or 'no reason given'}")
        if state.phase == COMPLETE:
            return state
        time.sleep(poll_s)
