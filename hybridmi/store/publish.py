"""The publishing half of ``ArtifactStore``: upload a version, commit its manifest, prune what is dead.

Guarantees, with any number of concurrent writers and readers of one key:

- **Atomic publish.** A writer uploads its files under its own version prefix, then writes the manifest
  (one object PUT on S3, one ``os.replace`` locally). A reader trusts only what a manifest names and
  verifies every file's size and sha256, so it sees a previous complete version or the new complete
  version, never a mix; an interrupted publish leaves the previous manifest and its objects intact.
- **The manifest is the single pointer, written conditionally.** The writer reads the manifest (and its
  ETag) before uploading and commits with ``If-Match: <etag>`` (``If-None-Match: *`` when there was
  none). If another writer committed in between, the commit fails, this writer removes its own version
  and raises ``PublishConflict`` naming the version that stands: exactly one of several concurrent
  writers wins. Endpoints that ignore these headers (detected once per store by a probe object) get the
  same check done by reading the manifest back after the write: then several writers may each see their
  own publish land in turn (last writer wins), but the key is never left broken.
- **Pruning never breaks a live artifact.** After its commit a writer deletes the version it replaced
  (no manifest can name it again: versions are never reused) and any other version that the live
  manifest does not name and whose newest object is older than ``prune_grace_s`` (crashed writers'
  leftovers). A version still being uploaded, or just committed by a racing writer, is younger than the
  grace period and is kept. A reader whose version is pruned under it re-reads the manifest and restarts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from hybridmi.runtime import sha256_file
from hybridmi.store.manifest import (
    MANIFEST,
    VERSIONS,
    FileEntry,
    Manifest,
    ObjectMissing,
    PreconditionFailed,
    PublishConflict,
    StoreError,
    new_version,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]  # (relative path, bytes) after each file is stored


class Publisher:
    """Mixed into ``ArtifactStore``, whose primitives it uses."""

    def _publish(
        self, key: str, files: list[tuple[str, Path]], progress: Progress | None, *, if_absent: bool = False
    ) -> Manifest:
        base, base_tag = self._manifest_tagged(key, lenient=True)
        if if_absent and base_tag is not None:
            raise PublishConflict(
                f"artifact {self._describe(key)} is already published{f' (version {base.version})' if base else ''}"
            )
        version = new_version()
        entries = []
        for rel, path in files:
            size, digest = path.stat().st_size, sha256_file(path)
            self._upload(f"{key}/{VERSIONS}/{version}/{rel}", path, size=size, sha256=digest)
            entries.append(FileEntry(rel, size, digest))
            if progress is not None:
                progress(rel, size)
        manifest = Manifest(key, version, tuple(entries), time.time())
        name = f"{key}/{MANIFEST}"
        try:
            self._commit(name, manifest.to_json(), tag=base_tag)
            won = self.conditional_writes or self._read_or_none(name) == manifest.to_json()
        except PreconditionFailed:
            won = False
        if not won:
            self._delete_quietly(list(self._list_names(f"{key}/{VERSIONS}/{version}/")), key)
            live, _ = self._manifest_tagged(key, lenient=True)
            raise PublishConflict(
                f"artifact {self._describe(key)} was published concurrently by another writer (version "
                f"{live.version if live else 'none'} stands); this publish (version {version}) was withdrawn"
            )
        log.info(
            "published %s (%d files, %d bytes, version %s)",
            self._describe(key),
            len(entries),
            manifest.total_bytes,
            version,
        )
        self._prune(key, known_dead={version, base.version if base else version})
        return manifest

    def _commit(self, name: str, data: bytes, *, tag: str | None) -> None:
        """Write ``data`` if the object is still at ``tag``; PreconditionFailed otherwise. A retried write
        whose first attempt landed (its answer lost) finds its own bytes there and counts as done."""
        try:
            if self.conditional_writes:
                self._write_conditional(name, data, tag=tag)
                return
            try:  # the endpoint ignores conditions: check, then write (the caller reads it back)
                current = self._read_tagged(name)[1]
            except ObjectMissing:
                current = None
            if current != tag:
                raise PreconditionFailed(name)
            self._upload_bytes(name, data)
        except PreconditionFailed:
            if self._read_or_none(name) != data:
                raise

    def _prune(self, key: str, *, known_dead: set[str]) -> None:
        """Delete versions the live manifest does not name that are known dead or older than the grace
        period; a failure only leaves garbage behind."""
        prefix = f"{key}/{VERSIONS}/"
        try:
            objects = list(self._list_objects(prefix))
            live, _ = self._manifest_tagged(key)  # after listing: a version committed meanwhile is live or young
            newest: dict[str, float] = {}
            for name, modified in objects:
                version = name[len(prefix) :].split("/", 1)[0]
                newest[version] = max(newest.get(version, 0.0), modified)
            cutoff = time.time() - self.prune_grace_s
            doomed = {
                v for v, t in newest.items() if (live is None or v != live.version) and (v in known_dead or t < cutoff)
            }
            self._delete_names([n for n, _ in objects if n[len(prefix) :].split("/", 1)[0] in doomed])
        except StoreError as exc:
            log.warning("could not remove old versions of %s: %s", self._describe(key), exc)

    def _delete_quietly(self, names: list[str], key: str) -> None:
        try:
            self._delete_names(names)
        except StoreError as exc:
            log.warning("could not remove a withdrawn version of %s: %s", self._describe(key), exc)
