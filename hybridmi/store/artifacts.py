"""What stages do with a store: content-addressed data sets and checkpoints that survive a preempted pod."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from hybridmi.store.base import ArtifactStore
from hybridmi.store.manifest import check_key

log = logging.getLogger(__name__)

_CHECKSUM = re.compile(r"^[0-9a-f]{8,128}$")
LATEST = "LATEST"


def dataset_key(checksum: str) -> str:
    if not _CHECKSUM.match(checksum):
        raise ValueError(f"data set checksum {checksum!r} is not a lowercase hex digest")
    return f"datasets/{checksum}"


def publish_dataset(store: ArtifactStore, local_dir: str | Path, checksum: str) -> str:
    """Publish a prepared data set under ``datasets/<checksum>``; a no-op when that key already exists.

    The key is the content checksum, so an existing key already holds these bytes (a second run reuses it).
    """
    key = dataset_key(checksum)
    if store.exists(key):
        log.info("data set %s already published; reusing it", key)
        return key
    store.put_dir(local_dir, key)
    return key


class CheckpointSync:
    """A TrainCallback that mirrors checkpoints to ``<key_prefix>/step-<step>`` with a ``LATEST`` pointer.

    ``upload`` publishes the file atomically, THEN rewrites the pointer (one object), THEN deletes the
    older steps, so at every moment LATEST names a complete checkpoint. A retried pod calls
    ``download_latest`` and resumes from it.
    """

    def __init__(self, store: ArtifactStore, key_prefix: str) -> None:
        self.store = store
        self.key_prefix = check_key(key_prefix)

    def __repr__(self) -> str:
        return f"CheckpointSync({self.store!r}, {self.key_prefix!r})"

    def step_key(self, step: int) -> str:
        if step < 0:
            raise ValueError(f"checkpoint step {step} is negative")
        return f"{self.key_prefix}/step-{step:010d}"

    def upload(self, path: str | Path, step: int) -> str:
        """Publish checkpoint file ``path`` for ``step``; returns its key."""
        key = self.step_key(step)
        self.store.put_file(path, key)
        self.store.put_document(f"{self.key_prefix}/{LATEST}", {"step": step, "key": key})
        for old in self.store.list(f"{self.key_prefix}/step-"):
            if old != key:
                self.store.delete(old)
        log.info("checkpoint for step %d synced to %s", step, key)
        return key

    def on_checkpoint(self, path: Path, step: int) -> None:
        self.upload(path, step)

    def latest_step(self) -> int | None:
        pointer = self.store.get_document(f"{self.key_prefix}/{LATEST}")
        return None if pointer is None else int(pointer["step"])

    def download_latest(self, local_dir: str | Path) -> Path | None:
        """Download the newest synced checkpoint into ``local_dir`` (keeping its file name); None if none yet."""
        pointer = self.store.get_document(f"{self.key_prefix}/{LATEST}")
        if pointer is None:
            return None
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        path = self.store.get_file(str(pointer["key"]), local_dir)
        log.info("resuming from checkpoint step %s downloaded to %s", pointer["step"], path)
        return path
