"""A TrainJob's state from its status (pure), and the wait for a final one that logs every change.

Kubeflow Trainer (v2.2) writes three condition types on a TrainJob: ``Suspended``, ``Complete`` and
``Failed`` (the last two copied from its JobSet, reason and message included, or ``Failed`` with
reason ``DeadlineExceeded`` past ``activeDeadlineSeconds``), and ``jobsStatus``: per replicated job,
how many child Jobs are active, ready, succeeded, failed. The phases below are the ones the
``kubeflow`` SDK shows: Created (no pod running yet), Running, Suspended, Complete, Failed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

CREATED, RUNNING, SUSPENDED, COMPLETE, FAILED = "Created", "Running", "Suspended", "Complete", "Failed"
FINAL = (COMPLETE, FAILED)
_COUNTS = ("active", "ready", "succeeded", "failed")


class TrainJobFailed(RuntimeError):
    """The TrainJob ended Failed; the message is one line with its reason."""


class KubeUnreachable(RuntimeError):
    """The Kubernetes API could not be reached for longer than the wait allows."""


@dataclass(frozen=True)
class TrainJobState:
    phase: str
    conditions: tuple[str, ...]  # "Type=Status (Reason: message)" of every condition, in the object's order
    jobs: str  # "node: 1 active, 1 ready, 0 succeeded, 0 failed"
    reason: str = ""  # the Failed (or Complete) condition's "Reason: message"

    @property
    def final(self) -> bool:
        return self.phase in FINAL

    def describe(self) -> str:
        parts = [self.phase, self.jobs, *self.conditions]
        return "; ".join(p for p in parts if p)


def _condition_text(condition: Mapping[str, Any]) -> str:
    reason, message = condition.get("reason", ""), " ".join(str(condition.get("message", "")).split())
    detail = ": ".join(p for p in (reason, message) if p)
    return f"{condition.get('type')}={condition.get('status')}" + (f" ({detail})" if detail else "")


def trainjob_state(obj: Mapping[str, Any]) -> TrainJobState:
    """The phase of a TrainJob object (a dict as the API returns it) with its conditions and child-job counts."""
    status = obj.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    true = {c.get("type"): c for c in conditions if c.get("status") == "True"}
    jobs = [j for j in status.get("jobsStatus") or [] if isinstance(j, Mapping)]
    counts = "; ".join(f"{j.get('name')}: " + ", ".join(f"{int(j.get(k) or 0)} {k}" for k in _COUNTS) for j in jobs)
    texts = tuple(_condition_text(c) for c in conditions)
    for phase in (FAILED, COMPLETE):  # Failed wins: a deadline can fail a job the JobSet still calls running
        if phase in true:
            condition = true[phase]
            detail = ": ".join(
                p for p in (condition.get("reason", ""), " ".join(str(condition.get("message", "")).split())) if p
            )
            return TrainJobState(phase, texts, counts, detail)
    if SUSPENDED in true:
        return TrainJobState(SUSPENDED, texts, counts)
    running = any(int(j.get("active") or 0) + int(j.get("ready") or 0) > 0 for j in jobs)
    return TrainJobState(RUNNING if running else CREATED, texts, counts)


def wait_for_trainjob(
    get: Callable[[], Mapping[str, Any] | None],
    *,
    name: str,
    poll_s: float = 10.0,
    unreachable_s: float = 300.0,
    transient: tuple[type[BaseException], ...] = (OSError,),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainJobState:
    """Poll ``get`` (the TrainJob object, None once deleted) until a final phase; log each change of state.

    Errors of the types in ``transient`` (the API server unreachable) are retried for up to
    ``unreachable_s`` seconds in a row, then raise KubeUnreachable. A Complete job returns its state;
    a Failed one raises TrainJobFailed naming its reason; a deleted one raises TrainJobFailed too.
    """
    last: TrainJobState | None = None
    down_since: float | None = None
    while True:
        try:
            obj = get()
        except transient as exc:
            now = clock()
            if down_since is None:
                down_since = now
                log.warning(
                    "TrainJob %s: the Kubernetes API does not answer (%s); retrying for up to %.0f s",
                    name,
                    " ".join(str(exc).split())[:200],
                    unreachable_s,
                )
            elif now - down_since > unreachable_s:
                raise KubeUnreachable(
                    f"the Kubernetes API did not answer for {now - down_since:.0f} s while the train step "
                    f"waited for TrainJob {name}, which may still be running "
                    f"(kubectl get trainjob {name})"
                ) from None
            sleep(poll_s)
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
        sleep(poll_s)
