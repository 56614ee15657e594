"""What every artifact store does, written once over the blob primitives that each backend supplies."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from hybridmi.errors import UsageError
from hybridmi.runtime import sha256_file
from hybridmi.store.manifest import (
    MANIFEST,
    VERSIONS,
    ArtifactNotFound,
    ChecksumMismatch,
    FileEntry,
    Manifest,
    ObjectMissing,
    PreconditionFailed,
    PublishConflict,
    StoreError,
    check_key,
    new_version,
    os_errors,
)

log = logging.getLogger(__name__)
PROBE_DIR = ".hybridmi"  # access probes live here; no artifact key can start with '.'
Progress = Callable[[str, int], None]  # (relative path, bytes) after each file is stored


class ArtifactStore:
    """Publish and fetch directories/files atomically with sha256 verification. Backends supply, over object names:
    ``_upload(name, src, size=, sha256=)``, ``_upload_bytes(name, data)``, ``_download(name, dest) -> sha256``,
    ``_read_tagged(name) -> (bytes, tag)``, ``_write_conditional(name, data, tag=)`` (PreconditionFailed unless the
    tag, None for absent, still holds), ``conditional_writes``, ``_list_objects(prefix) -> sorted (name, mtime)``,
    ``_delete_names(names)``, ``_describe(name)``; a missing object raises ObjectMissing."""

    uri: str
    prune_grace_s: float = 3600.0  # seconds an unnamed version is left alone (an upload may still be in flight)

    def put_dir(
        self, local_dir: str | Path, key: str, *, progress: Progress | None = None, if_absent: bool = False
    ) -> Manifest:
        """Publish every file under ``local_dir`` as artifact ``key`` (replacing any previous version)."""
        local_dir = Path(local_dir)
        files = sorted((p.relative_to(local_dir).as_posix(), p) for p in local_dir.rglob("*") if p.is_file())
        if not files:
            raise UsageError(f"cannot publish {local_dir}: no files (not a directory, or an empty one)")
        return self._publish(check_key(key), files, progress, if_absent)

    def put_file(self, local_file: str | Path, key: str, *, progress: Progress | None = None) -> Manifest:
        """Publish one file as artifact ``key``; it keeps its file name inside the artifact."""
        local_file = Path(local_file)
        if not local_file.is_file():
            raise UsageError(f"cannot publish {local_file}: not a file")
        return self._publish(check_key(key), [(local_file.name, local_file)], progress, False)

    def get_dir(self, key: str, local_dir: str | Path) -> Path:
        """Download and verify artifact ``key`` into ``local_dir`` (absent or empty); returns it."""
        local_dir = Path(local_dir)
        if local_dir.exists() and (not local_dir.is_dir() or any(local_dir.iterdir())):
            raise UsageError(f"cannot download into {local_dir}: it exists and is not an empty directory")
        staging = local_dir.parent / f".{local_dir.name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            with os_errors(f"download {self._describe(key)} into {local_dir}"):
                local_dir.parent.mkdir(parents=True, exist_ok=True)
                self._fetch_verified(check_key(key), staging)
                if local_dir.exists():
                    local_dir.rmdir()
                os.replace(staging, local_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return local_dir

    def exists(self, key: str) -> bool:
        """True when ``key`` has a manifest (a complete publish)."""
        return self._tagged_or_none(f"{check_key(key)}/{MANIFEST}")[0] is not None

    def manifest(self, key: str) -> Manifest:
        if (manifest := self._manifest_tagged(check_key(key))[0]) is None:
            raise ArtifactNotFound(f"no artifact {self._describe(key)} (no {MANIFEST})")
        return manifest

    def list(self, prefix: str = "") -> list[str]:
        """Keys of the published artifacts whose key starts with ``prefix``, sorted."""
        names = (n for n in self._list_names(prefix.lstrip("/")) if f"/{VERSIONS}/" not in "/" + n)
        return sorted(n[: -len(MANIFEST) - 1] for n in names if n.endswith("/" + MANIFEST))

    def delete(self, key: str) -> bool:
        """Remove artifact ``key`` (manifest first, so readers stop trusting it); False if it was absent."""
        key = check_key(key)
        if existed := self.exists(key):
            self._delete_names([f"{key}/{MANIFEST}"])
        self._delete_names(list(self._list_names(f"{key}/{VERSIONS}/")))
        return existed

    def put_document(self, key: str, payload: dict[str, Any]) -> None:
        """Store a small JSON document as ONE object (atomic by itself); for pointers such as LATEST."""
        self._upload_bytes(check_key(key), _document_bytes(payload))

    def get_document(self, key: str) -> dict[str, Any] | None:
        return self.get_document_tagged(key)[0]

    def get_document_tagged(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """(document, tag) at ``key``, (None, None) when there is none; the tag feeds ``replace_document``."""
        data, tag = self._tagged_or_none(check_key(key))
        try:
            return (None if data is None else json.loads(data)), tag
        except ValueError:
            raise StoreError(f"document {self._describe(key)} is not valid JSON") from None

    def replace_document(self, key: str, payload: dict[str, Any], *, tag: str | None) -> bool:
        """Write it only if it is still the one read with ``tag`` (None: if none); False when another writer won."""
        return self._commit(check_key(key), _document_bytes(payload), tag=tag)

    def check_access(self, *, write: bool = False) -> None:
        """Fail fast, before any work: StoreAuthError for rejected credentials, StoreError when the store cannot
        be used, StoreUnavailable when it cannot be reached; ``write`` also writes and deletes a probe object."""
        list(self._list_objects(f"{PROBE_DIR}/probe-none/"))
        if write:
            name = f"{PROBE_DIR}/probe-{uuid.uuid4().hex}"
            self._upload_bytes(name, b"hybridmi write probe\n")
            self._delete_names([name])
            _ = self.conditional_writes

    def _publish(self, key: str, files: list[tuple[str, Path]], progress: Progress | None, if_absent: bool) -> Manifest:
        """Upload a new version, then commit its manifest against the one read first; withdraw it on a lost race."""
        base, base_tag = self._manifest_tagged(key, lenient=True)
        if if_absent and base_tag is not None:
            raise PublishConflict(f"artifact {self._describe(key)} is already published")
        version, entries = new_version(), []
        for rel, path in files:
            with os_errors(f"read {path} to publish as {self._describe(key)}"):
                size, digest = path.stat().st_size, sha256_file(path)
            self._upload(f"{key}/{VERSIONS}/{version}/{rel}", path, size=size, sha256=digest)
            entries.append(FileEntry(rel, size, digest))
            if progress is not None:
                progress(rel, size)
        manifest = Manifest(key, version, tuple(entries), time.time())
        if not self._commit(f"{key}/{MANIFEST}", manifest.to_json(), tag=base_tag):
            try:
                self._delete_names(list(self._list_names(f"{key}/{VERSIONS}/{version}/")))
            except StoreError as exc:
                log.warning("could not remove a withdrawn version of %s: %s", self._describe(key), exc)
            live, _ = self._manifest_tagged(key, lenient=True)
            why = f"(version {live.version if live else 'none'} stands); this publish (version {version}) was withdrawn"
            raise PublishConflict(f"artifact {self._describe(key)} was published concurrently by another writer {why}")
        size = sum(e.size for e in entries)
        log.info("published %s (%d files, %d bytes, version %s)", self._describe(key), len(entries), size, version)
        self._prune(key, known_dead={version, base.version if base else version})
        return manifest

    def _commit(self, name: str, data: bytes, *, tag: str | None) -> bool:
        """Write ``data`` if the object is still at ``tag``; False when another writer's bytes stand. A retried write
        whose first attempt landed (its answer lost) finds its own bytes there and counts as done."""
        try:  # an endpoint that ignores conditions: check, then write, then read back
            (self._write_conditional if self.conditional_writes else self._check_then_write)(name, data, tag=tag)
        except PreconditionFailed:
            return self._tagged_or_none(name)[0] == data
        return self.conditional_writes or self._tagged_or_none(name)[0] == data

    def _check_then_write(self, name: str, data: bytes, *, tag: str | None) -> None:
        if self._tagged_or_none(name)[1] != tag:
            raise PreconditionFailed(name)
        self._upload_bytes(name, data)

    def _prune(self, key: str, *, known_dead: set[str]) -> None:
        """Delete unnamed versions known dead or past the grace period; a failure only leaves garbage behind."""
        prefix = f"{key}/{VERSIONS}/"
        version_of = lambda name: name[len(prefix) :].split("/", 1)[0]
        try:
            objects = list(self._list_objects(prefix))
            live, _ = self._manifest_tagged(key)  # after listing: a version committed meanwhile is live or young
            newest: dict[str, float] = {}
            for name, modified in objects:
                newest[version_of(name)] = max(newest.get(version_of(name), 0.0), modified)
            cutoff = time.time() - self.prune_grace_s
            dead = {v for v, t in newest.items() if (v in known_dead or t < cutoff) and v != (live and live.version)}
            self._delete_names([n for n, _ in objects if version_of(n) in dead])
        except StoreError as exc:
            log.warning("could not remove old versions of %s: %s", self._describe(key), exc)

    def _list_names(self, prefix: str) -> Iterator[str]:
        return (name for name, _ in self._list_objects(prefix))

    def _tagged_or_none(self, name: str) -> tuple[bytes | None, str | None]:
        try:
            return self._read_tagged(name)
        except ObjectMissing:
            return None, None

    def _manifest_tagged(self, key: str, *, lenient: bool = False) -> tuple[Manifest | None, str | None]:
        """(manifest, tag), (None, None) when absent; ``lenient``: an unreadable manifest is (None, its tag)."""
        data, tag = self._tagged_or_none(f"{key}/{MANIFEST}")
        try:
            return (None if data is None else Manifest.from_json(data, where=self._describe(f"{key}/{MANIFEST}"))), tag
        except StoreError as exc:
            if not lenient:
                raise
            log.warning("%s; a new publish replaces it", exc)
            return None, tag

    def _fetch_verified(self, key: str, staging: Path) -> Manifest:
        """Download the manifest's files into ``staging`` and verify them; restart if a republish races us."""
        for _ in range(3):
            manifest = self.manifest(key)
            try:
                for entry in manifest.files:
                    name, dest = f"{key}/{VERSIONS}/{manifest.version}/{entry.path}", staging / entry.path
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    digest, size = self._download(name, dest), dest.stat().st_size
                    if digest != entry.sha256 or size != entry.size:
                        got = f"got sha256 {digest} ({size} bytes), manifest says {entry.sha256} ({entry.size} bytes)"
                        raise ChecksumMismatch(f"checksum mismatch for {self._describe(name)}: {got}")
                return manifest
            except ObjectMissing as missing:
                if self.manifest(key).version == manifest.version:
                    where = self._describe(str(missing))
                    raise StoreError(f"artifact {self._describe(key)} is damaged: {where} is missing") from None
                shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"artifact {self._describe(key)} kept changing while it was being read")


def _document_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, sort_keys=True) + "\n").encode()


def write_hashed(chunks: Iterable[bytes], dest: Path) -> str:
    """Write ``chunks`` to ``dest`` (truncating it); their sha256."""
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for chunk in chunks:
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()
