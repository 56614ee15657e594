"""Training checkpoints mirrored to object storage by a background thread, so that a preempted pod resumes
instead of starting over and a slow or absent store never slows training."""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from hybridmi.errors import UsageError
from hybridmi.store.base import ArtifactStore, check_key
from hybridmi.store.manifest import PublishConflict, StoreAuthError, StoreError, StoreIOError, StoreUnavailable
from hybridmi.train.checkpoint import record_checksum

log = logging.getLogger(__name__)
LATEST = "LATEST"
FLUSH_TIMEOUT_S = 120.0  # how long flush (and process exit) waits for the mirror to finish
_STEP_KEY = re.compile(r"/step-(\d+)$")
_PRIVATE = ".mirror-"  # directories beside the checkpoint: snapshots being mirrored, downloads in progress
Accept = Callable[[Path], "str | None"]  # a reason to refuse mirroring this checkpoint file, or None
Job = tuple[Path, int]  # (snapshot of a checkpoint file, its step)


class CheckpointSync:
    """A training callback that mirrors checkpoints of run ``run_id`` under ``key_prefix`` (newest wins): a worker
    thread checks each with ``accept`` and uploads it; at most one waits (a newer one replaces it, the replaced one
    kept only until the newer one is accepted). A store failure only warns."""

    def __init__(self, store: ArtifactStore, key_prefix: str, *, run_id: str = "", accept: Accept | None = None):
        self.store, self.key_prefix, self.run_id, self.accept = store, check_key(key_prefix), run_id, accept
        self._cv = threading.Condition()
        self._waiting: list[Job] = []  # not started, oldest first: at most [replaced, newest]
        self._current: Job | None = None  # the worker's
        self._failed: Job | None = None  # the newest accepted checkpoint whose upload failed
        self._worker: threading.Thread | None = None
        self._outage = False
        self._damaged: str | None = None  # a mirrored checkpoint key found unusable: any step may replace it

    def __repr__(self) -> str:
        return f"CheckpointSync({self.store!r}, {self.key_prefix!r})"

    def step_key(self, step: int) -> str:
        if step < 0:
            raise UsageError(f"checkpoint step {step} is negative")
        return f"{self.key_prefix}/step-{step:010d}"

    def pointer(self) -> dict[str, Any] | None:
        return self.store.get_document(f"{self.key_prefix}/{LATEST}")

    def latest_step(self) -> int | None:
        return None if (pointer := self.pointer()) is None else int(pointer["step"])

    def _holds(self, pointer: dict[str, Any] | None, step: int) -> bool:
        """True when the mirror already holds ``step`` or a later step of this run."""
        mine = pointer is not None and pointer.get("run_id") == self.run_id and pointer.get("key") != self._damaged
        return mine and int(pointer["step"]) >= step

    def upload(self, path: str | Path, step: int) -> bool:
        """Mirror ``path`` as ``step`` now; False when the mirror holds it or a newer step of this run; StoreError."""
        latest, key = f"{self.key_prefix}/{LATEST}", self.step_key(step)
        pointer, tag = self.store.get_document_tagged(latest)
        if self._holds(pointer, step):
            log.info("checkpoint mirror already holds step %s of this run; step %d not uploaded", pointer["step"], step)
            return False
        try:
            self.store.put_file(Path(path), key)
        except PublishConflict:  # another writer of this run mirrored the same step: its whole copy stands
            log.info("step %d was mirrored concurrently by another writer; using that copy", step)
        for _ in range(10):
            if self.store.replace_document(latest, {"run_id": self.run_id, "step": step, "key": key}, tag=tag):
                break
            pointer, tag = self.store.get_document_tagged(latest)  # another writer moved it: compare again
            if self._holds(pointer, step):
                if pointer["key"] != key:
                    self.store.delete(key)
                log.info("checkpoint mirror moved to step %s meanwhile; step %d withdrawn", pointer["step"], step)
                return False
        else:
            raise StoreError(f"checkpoint pointer {latest} kept changing while step {step} was mirrored")
        log.info("checkpoint for step %d mirrored to %s", step, key)
        try:  # later steps may belong to a writer still at work: only older ones go
            for old in self.store.list(f"{self.key_prefix}/step-"):
                if (match := _STEP_KEY.search(old)) and int(match.group(1)) < step:
                    self.store.delete(old)
        except StoreError as exc:  # the pointer has moved: older steps are only garbage now
            log.warning("could not remove older mirrored checkpoints under %s: %s", self.key_prefix, exc)
        return True

    def on_checkpoint(self, path: Path, step: int) -> None:
        """Hard-link ``path`` (a later save renames over it) for the worker to send; returns at once, never raises."""
        path = Path(path)
        snapshot = path.parent / f"{_PRIVATE}{uuid.uuid4().hex[:8]}" / path.name  # a private directory beside it
        try:
            snapshot.parent.mkdir()
            try:
                os.link(path, snapshot)
            except OSError:  # copied where links are refused
                shutil.copyfile(path, snapshot)
        except OSError as exc:
            _discard(snapshot)
            log.warning("checkpoint step %d is not mirrored: %s could not be snapshotted (%s)", step, path, exc)
            return
        with self._cv:
            self._submit((snapshot, step))

    def _submit(self, job: Job) -> None:
        """Queue ``job`` (lock held), dropping all but it and the one it replaces; start the worker if idle."""
        self._waiting.append(job)
        for old, _ in self._waiting[:-2]:
            _discard(old)
        del self._waiting[:-2]
        if self._worker is None:
            self._worker = threading.Thread(target=self._drain, name="checkpoint-mirror", daemon=True)
            self._worker.start()
            atexit.register(self.close)  # an exiting process still delivers what is in flight (bounded)

    def _drain(self) -> None:
        while True:
            with self._cv:
                if not self._waiting:
                    self._worker = self._current = None
                    self._cv.notify_all()
                    atexit.unregister(self.close)
                    return
                self._current = job = self._waiting.pop()  # the newest; the one it replaced waits as its fallback
            try:
                self._mirror(job)
            except Exception:  # a bug must not end the worker with checkpoints waiting
                log.exception("checkpoint mirror failed on step %d", job[1])

    def _mirror(self, job: Job) -> None:
        snapshot, step = job
        if (reason := self.accept(snapshot) if self.accept else None) is not None:
            _discard(snapshot)
            log.error("checkpoint step %d is not mirrored: %s; the mirror keeps step %s", step, reason, self._latest())
            return
        with self._cv:  # accepted: older checkpoints are no longer worth sending
            older = [j for j in self._waiting if j[1] < step] + ([self._failed] if self._failed else [])
            self._waiting, self._failed = [j for j in self._waiting if j[1] >= step], None
        for old, _ in older:
            _discard(old)
        try:
            self.upload(snapshot, step)
        except StoreError as exc:
            if not self._outage:
                kept = f"step {step} is kept locally at {_origin(snapshot)}; mirroring is retried at each checkpoint"
                log.warning("checkpoint mirror %s unavailable (%s); training continues: %s", self.store.uri, exc, kept)
            self._outage, self._failed = True, job
            return
        _discard(snapshot)
        if self._outage:
            log.info("checkpoint mirror %s reachable again: step %d mirrored", self.store.uri, step)
        self._outage = False

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait (at most ``timeout_s``) for the newest checkpoint, retrying a failed upload; False (warned) if not."""
        with self._cv:
            if self._failed is not None and self._worker is None:
                job, self._failed = self._failed, None
                self._submit(job)
            done = self._cv.wait_for(lambda: self._worker is None, timeout=timeout_s)
            lacking = self._failed if done else (self._waiting or [self._current])[-1]
        if lacking is None:
            return True
        why = "could not be mirrored" if done else f"is still being mirrored after {timeout_s:g} s"
        log.warning("checkpoint step %d %s; it is kept locally at %s", lacking[1], why, _origin(lacking[0]))
        return False

    def close(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Wait (at most ``timeout_s``) for the upload in flight, then drop what is left; never raises."""
        with self._cv:
            self._cv.wait_for(lambda: self._worker is None, timeout=timeout_s)
            left, self._waiting, self._failed = [*self._waiting, *([self._failed] if self._failed else [])], [], None
        for snapshot, _ in left:
            _discard(snapshot)

    def _latest(self) -> str:
        try:
            return "none" if (step := self.latest_step()) is None else str(step)
        except StoreError:
            return "unknown (store unavailable)"

    def restore(self, local_dir: str | Path, *, local: tuple[Path, int] | None) -> Path | None:
        """Bring the newer of the local checkpoint ``local`` = (path, step) and the mirrored one into ``local_dir``;
        the downloaded checkpoint, or None when the local one (or none) is kept (and mirrored, when newer)."""
        for stale in Path(local_dir).glob(f"{_PRIVATE}*"):  # left by a killed process
            shutil.rmtree(stale, ignore_errors=True)
        if (pointer := self.pointer()) is None:
            return self._keep(local)
        step, run = int(pointer["step"]), pointer.get("run_id")
        if local is not None and run != self.run_id:
            log.info("keeping the local checkpoint (step %d); the mirror holds run %s's step %d", local[1], run, step)
            return self._keep(local)
        if local is not None and step <= local[1]:
            if step < local[1]:
                log.info("local checkpoint step %d is newer than the mirrored step %d: kept", local[1], step)
                return self._keep(local)
            return None
        if run != self.run_id:
            log.info("resuming from run %s's mirrored checkpoint (step %d)", run, step)
        try:
            return self._download(pointer, Path(local_dir))
        except (StoreUnavailable, StoreAuthError, StoreIOError):
            raise  # the mirror holds newer work (or the local disk failed): fail, so that a retry can fetch it
        except StoreError as exc:  # damaged or gone: what is local (or a fresh start) is all there is
            self._damaged = str(pointer["key"])
            instead = f"the local checkpoint (step {local[1]})" if local else "scratch"
            log.warning("the mirrored checkpoint step %d cannot be used (%s); continuing from %s", step, exc, instead)
            return self._keep(local)

    def _keep(self, local: tuple[Path, int] | None) -> None:
        if local is not None:  # mirrored, in case the mirror lacks it
            self.on_checkpoint(*local)

    def download_latest(self, local_dir: str | Path) -> Path | None:
        """Download the newest mirrored checkpoint into ``local_dir`` (keeping its file name); None if none yet."""
        return None if (pointer := self.pointer()) is None else self._download(pointer, Path(local_dir))

    def _download(self, pointer: dict[str, Any], local_dir: Path) -> Path:
        key, step = str(pointer["key"]), int(pointer["step"])
        staging = local_dir / f"{_PRIVATE}{uuid.uuid4().hex[:8]}"
        try:
            files = list(self.store.get_dir(key, staging).iterdir())
            for file in files:
                record_checksum(file, as_path=local_dir / file.name)  # verified by the store's manifest
                os.replace(file, local_dir / file.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("resuming from checkpoint step %d of the mirror (%s), downloaded to %s", step, key, local_dir)
        return local_dir / files[0].name


def _origin(snapshot: Path) -> Path:
    return snapshot.parent.parent / snapshot.name


def _discard(snapshot: Path) -> None:
    shutil.rmtree(snapshot.parent, ignore_errors=True)
