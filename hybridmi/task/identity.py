"""Run identity: which run a task belongs to, where its checkpoints live, which run id its metrics carry."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Mapping

from hybridmi.cluster import RESUME_FROM_VAR, RUN_ID_PATTERN, RUN_ID_VAR
from hybridmi.config import Config
from hybridmi.errors import UsageError

log = logging.getLogger(__name__)

RUN_ID = re.compile(RUN_ID_PATTERN)


def new_run_id(prefix: str = "local") -> str:
    """A fresh run id for a run no orchestrator named: ``<prefix>-YYYYmmdd-HHMMSS-<6 hex>``."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def check_run_id(run_id: str, what: str = "run id") -> str:
    if not RUN_ID.fullmatch(run_id):
        raise UsageError(f"{what} {run_id!r} is not a run id (letters, digits, '.', '_', '-'; at most 128)")
    return run_id


@dataclass(frozen=True)
class RunIdentity:
    """The run a task belongs to and the run whose checkpoints it may continue (empty: none)."""

    run_id: str
    resume_from: str = ""

    def checkpoint_key(self, cfg: Config, stage: str, *, run_id: str | None = None) -> str:
        """``checkpoints/<run id>/<training hash>/<stage>``: per run, and per branch of training within it (the α
        sweep's); a changed monitoring, sampling, FID or evaluation section finds the same checkpoints."""
        return f"checkpoints/{run_id or self.run_id}/{cfg.training_hash()}/{stage}"

    def metrics_run_id(self, cfg: Config) -> str:
        """The ``run_id`` label of the task's Prometheus series: ``monitoring.run_id`` when set, else ``<run id>.<config hash[:8]>``."""
        return cfg.monitoring.run_id or f"{self.run_id}.{cfg.hash()[:8]}"


def task_identity(env: Mapping[str, str], *, resume_from: str | None = None) -> RunIdentity:
    """The identity of a task from its environment (``resume_from`` given by a component wins over the env)."""
    run_id = env.get(RUN_ID_VAR, "").strip()
    if not run_id:
        run_id = new_run_id("adhoc")
        log.warning(
            "%s is not set: this task is run %s (checkpoints of earlier tasks are not resumed)", RUN_ID_VAR, run_id
        )
    resume = (env.get(RESUME_FROM_VAR, "") if resume_from is None else resume_from).strip()
    return RunIdentity(
        run_id=check_run_id(run_id, RUN_ID_VAR), resume_from=resume and check_run_id(resume, "resume_from")
    )
