"""Training checkpoints mirrored to object storage, so that a preempted pod resumes instead of starting over.

    <key_prefix>/step-<step>/        the checkpoint file, one artifact
    <key_prefix>/LATEST              {"run_id", "step", "key"}: the newest complete mirrored checkpoint

Newest wins: a checkpoint is identified by (run id, step). The pointer only moves to a greater step of
the same run (or to the current run, replacing another run's), with a conditional write of the pointer
that was read, so two writers of one run (a zombie pod and its retry) cannot move it backwards. On
resume the local checkpoint is kept unless the mirror holds a greater step of the same run.

Training outlives the store: a failed mirror upload logs one warning per outage, keeps the local
checkpoint, retries at the next checkpoint (without backoff while the outage lasts, so training is not
slowed) and ``flush`` tries the last one again, with full retries, when the stage ends.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

from hybridmi.store.base import ArtifactStore
from hybridmi.store.manifest import PublishConflict, StoreAuthError, StoreError, StoreUnavailable, check_key
from hybridmi.store.retry import RetryPolicy

log = logging.getLogger(__name__)

LATEST = "LATEST"
_STEP_KEY = re.compile(r"/step-(\d+)$")
Accept = Callable[[Path], "str | None"]  # a reason to refuse mirroring this checkpoint file, or None


class CheckpointSync:
    """A TrainCallback that mirrors checkpoints of run ``run_id`` under ``key_prefix`` (newest wins)."""

    def __init__(
        self,
        store: ArtifactStore,
        key_prefix: str,
        *,
        run_id: str = "",
        accept: Accept | None = None,
        outage_retry: RetryPolicy = RetryPolicy(attempts=1),
    ) -> None:
        self.store = store
        self.key_prefix = check_key(key_prefix)
        self.run_id = run_id
        self.accept = accept
        self.outage_retry = outage_retry
        self._outage = False
        self._pending: tuple[Path, int] | None = None  # the newest local checkpoint the mirror lacks
        self._damaged: str | None = None  # a mirrored checkpoint key found unusable: any step may replace it

    def __repr__(self) -> str:
        return f"CheckpointSync({self.store!r}, {self.key_prefix!r})"

    def step_key(self, step: int) -> str:
        if step < 0:
            raise ValueError(f"checkpoint step {step} is negative")
        return f"{self.key_prefix}/step-{step:010d}"

    # -- the pointer --------------------------------------------------------------------------------
    def pointer(self) -> dict[str, Any] | None:
        return self.store.get_document(f"{self.key_prefix}/{LATEST}")

    def latest_step(self) -> int | None:
        pointer = self.pointer()
        return None if pointer is None else int(pointer["step"])

    def _holds(self, pointer: dict[str, Any] | None, step: int) -> bool:
        """True when the mirror already holds ``step`` or a later step of this run."""
        return (
            pointer is not None
            and pointer.get("run_id") == self.run_id
            and int(pointer["step"]) >= step
            and pointer.get("key") != self._damaged
        )

    # -- writing ------------------------------------------------------------------------------------
    def upload(self, path: str | Path, step: int, *, store: ArtifactStore | None = None) -> bool:
        """Mirror checkpoint ``path`` (and its sidecar) for ``step``; False when the mirror already holds
        that step or a newer one of this run. StoreError when the store fails."""
        store = store or self.store
        latest = f"{self.key_prefix}/{LATEST}"
        pointer, tag = store.get_document_tagged(latest)
        if self._holds(pointer, step):
            log.info(
                "checkpoint mirror already holds step %s of run %s; step %d not uploaded",
                pointer["step"],
                self.run_id,
                step,
            )
            return False
        key = self.step_key(step)
        try:
            store.put_file(Path(path), key)
        except PublishConflict:  # another writer of this run mirrored the same step: its whole copy stands
            log.info("step %d was mirrored concurrently by another writer; using that copy", step)
        for _ in range(10):
            if store.replace_document(latest, {"run_id": self.run_id, "step": step, "key": key}, tag=tag):
                break
            pointer, tag = store.get_document_tagged(latest)  # another writer moved it: compare again
            if self._holds(pointer, step):
                if pointer["key"] != key:
                    store.delete(key)
                log.info("checkpoint mirror moved to step %s meanwhile; step %d withdrawn", pointer["step"], step)
                return False
        else:
            raise StoreError(f"checkpoint pointer {latest} kept changing while step {step} was mirrored")
        log.info("checkpoint for step %d mirrored to %s", step, key)
        try:
            for old in store.list(f"{self.key_prefix}/step-"):  # later steps may belong to a writer still at work
                match = _STEP_KEY.search(old)
                if match and int(match.group(1)) < step:
                    store.delete(old)
        except StoreError as exc:  # the pointer has moved: older steps are only garbage now
            log.warning("could not remove older mirrored checkpoints under %s: %s", self.key_prefix, exc)
        return True

    def on_checkpoint(self, path: Path, step: int) -> None:
        """Mirror a checkpoint the trainer just wrote; a store failure never stops training."""
        reason = self.accept(Path(path)) if self.accept is not None else None
        if reason is not None:
            self._pending = None  # the file at ``path`` no longer holds the pending checkpoint
            log.error(
                "checkpoint step %d is not mirrored: %s; the mirror keeps step %s",
                step,
                reason,
                self._latest_or_unknown(),
            )
            return
        self._pending = (Path(path), step)
        self._try_upload(step, store=self.store.with_retry(self.outage_retry) if self._outage else self.store)

    def flush(self) -> bool:
        """Mirror the newest local checkpoint the mirror lacks (after an outage, or found at restore), with
        full retries; False (and a warning naming the local file) when that still fails."""
        if self._pending is None:
            return True
        path, step = self._pending
        if not self._try_upload(step, store=self.store):
            log.warning("checkpoint step %d could not be mirrored; it is kept locally at %s", step, path)
            return False
        return True

    def _try_upload(self, step: int, *, store: ArtifactStore) -> bool:
        path, _ = self._pending
        try:
            self.upload(path, step, store=store)
        except StoreError as exc:
            if not self._outage:
                log.warning(
                    "checkpoint mirror %s unavailable (%s); training continues: checkpoint step %d is kept "
                    "locally at %s and mirroring is retried at each checkpoint",
                    self.store.uri,
                    exc,
                    step,
                    path,
                )
            else:
                log.debug("checkpoint mirror still unavailable at step %d: %s", step, exc)
            self._outage = True
            return False
        if self._outage:
            log.info("checkpoint mirror %s reachable again: step %d mirrored", self.store.uri, step)
        self._outage, self._pending = False, None
        return True

    def _latest_or_unknown(self) -> str:
        try:
            step = self.latest_step()
        except StoreError:
            return "unknown (store unavailable)"
        return "none" if step is None else str(step)

    # -- resuming -----------------------------------------------------------------------------------
    def restore(self, local_dir: str | Path, *, local: tuple[Path, int] | None) -> Path | None:
        """Bring the newer of the local checkpoint ``local`` = (path, step) and the mirrored one into
        ``local_dir``; returns the downloaded checkpoint, or None when the local one (or none) is kept."""
        pointer = self.pointer()
        if pointer is None:
            if local is not None:
                self._pending = local
            return None
        step, run = int(pointer["step"]), pointer.get("run_id")
        if local is not None:
            path, local_step = local
            if run != self.run_id:
                log.info(
                    "keeping the local checkpoint (step %d); the mirror holds run %s's step %d", local_step, run, step
                )
                self._pending = local
                return None
            if step <= local_step:
                if step < local_step:
                    log.info("local checkpoint step %d is newer than the mirrored step %d: kept", local_step, step)
                    self._pending = local
                return None
        elif run != self.run_id:
            log.info("resuming from run %s's mirrored checkpoint (step %d)", run, step)
        try:
            return self._download(str(pointer["key"]), Path(local_dir), step)
        except (StoreUnavailable, StoreAuthError):
            raise  # the mirror holds newer work: fail, so that a retry can fetch it
        except StoreError as exc:  # damaged or gone: what is local (or a fresh start) is all there is
            self._damaged = str(pointer["key"])
            log.warning(
                "the mirrored checkpoint step %d cannot be used (%s); continuing from %s",
                step,
                exc,
                f"the local checkpoint (step {local[1]})" if local else "scratch",
            )
            if local is not None:
                self._pending = local
            return None

    def download_latest(self, local_dir: str | Path) -> Path | None:
        """Download the newest mirrored checkpoint into ``local_dir`` (keeping its file name); None if none yet."""
        pointer = self.pointer()
        return None if pointer is None else self._download(str(pointer["key"]), Path(local_dir), int(pointer["step"]))

    def _download(self, key: str, local_dir: Path, step: int) -> Path:
        local_dir.mkdir(parents=True, exist_ok=True)
        staging = local_dir / f".mirror-{uuid.uuid4().hex[:8]}"
        try:
            self.store.get_dir(key, staging)
            files = list(staging.iterdir())
            for file in files:
                os.replace(file, local_dir / file.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        checkpoint = local_dir / files[0].name
        log.info("resuming from checkpoint step %d of the mirror (%s), downloaded to %s", step, key, checkpoint)
        return checkpoint
