"""What every artifact store does, written once over the blob primitives that each backend supplies.

Layout of an artifact published under ``key`` (relative to the store's root):

    <key>/MANIFEST.json                   written LAST: format, version, [{path, size, sha256}]
    <key>/.versions/<version>/<path>      the files of one publish (a fresh, unique version id per writer)

Object names are always built from the key being READ, never from a key recorded inside the manifest,
so an artifact is readable through any store root above it (``s3://b/p`` + ``runs/x`` is the same
artifact as ``s3://b`` + ``p/runs/x``).

What holds with any number of concurrent writers and readers of one key is in ``publish.py``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator

from hybridmi.store.manifest import (
    MANIFEST,
    VERSIONS,
    ArtifactNotFound,
    ChecksumMismatch,
    FileEntry,
    Manifest,
    ObjectMissing,
    PreconditionFailed,
    StoreError,
    check_key,
)
from hybridmi.store.publish import Progress, Publisher

log = logging.getLogger(__name__)

PROBE_DIR = ".hybridmi"  # access probes live here; no artifact key can start with '.'


class ArtifactStore(Publisher):
    """Publish and fetch directories/files atomically with sha256 verification.

    Backends implement ``_upload``, ``_upload_bytes``, ``_download``, ``_read_tagged``, ``_write_conditional``,
    ``_list_objects``, ``_delete_names`` and ``_describe`` over object names relative to the store root,
    and say whether the endpoint honours conditional writes (``conditional_writes``).
    """

    uri: str
    prune_grace_s: float = 3600.0  # seconds an unnamed version is left alone (an upload may still be in flight)

    # -- primitives -------------------------------------------------------------------------------
    def _upload(self, name: str, src: Path, *, size: int, sha256: str) -> None:
        raise NotImplementedError

    def _upload_bytes(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def _download(self, name: str, dest: Path) -> str:
        """Stream object ``name`` into ``dest``; return the sha256 of what was written. ObjectMissing if absent."""
        raise NotImplementedError

    def _read_tagged(self, name: str) -> tuple[bytes, str]:
        """The object's bytes and its entity tag (changes whenever the object does); ObjectMissing if absent."""
        raise NotImplementedError

    def _write_conditional(self, name: str, data: bytes, *, tag: str | None) -> None:
        """Write ``data`` only if the object's tag is still ``tag`` (None: only if it is absent), atomically
        with the check; PreconditionFailed otherwise. Called only when ``conditional_writes`` is True."""
        raise NotImplementedError

    @property
    def conditional_writes(self) -> bool:
        raise NotImplementedError

    def _list_objects(self, prefix: str) -> Iterator[tuple[str, float]]:
        """(name, last-modified unix time) of every object whose name starts with ``prefix``, sorted by name."""
        raise NotImplementedError

    def _delete_names(self, names: Iterable[str]) -> None:
        raise NotImplementedError

    def _describe(self, name: str) -> str:
        raise NotImplementedError

    def _read_bytes(self, name: str) -> bytes:
        return self._read_tagged(name)[0]

    def _list_names(self, prefix: str) -> Iterator[str]:
        return (name for name, _ in self._list_objects(prefix))

    def with_retry(self, retry: Any) -> "ArtifactStore":
        """The same store with another RetryPolicy (backends without retries ignore it)."""
        clone = copy.copy(self)
        clone.retry = retry
        return clone

    # -- public API -------------------------------------------------------------------------------
    def put_dir(
        self, local_dir: str | Path, key: str, *, progress: Progress | None = None, if_absent: bool = False
    ) -> Manifest:
        """Publish every file under ``local_dir`` as artifact ``key`` (replacing any previous version).

        PublishConflict when another writer committed ``key`` while this publish was in flight (with
        ``if_absent``: when ``key`` is published by anyone, before or during this publish).
        """
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise ValueError(f"cannot publish {local_dir}: not a directory")
        files = sorted((p.relative_to(local_dir).as_posix(), p) for p in local_dir.rglob("*") if p.is_file())
        if not files:
            raise ValueError(f"cannot publish {local_dir}: it contains no files")
        return self._publish(check_key(key), files, progress, if_absent=if_absent)

    def put_file(self, local_file: str | Path, key: str, *, progress: Progress | None = None) -> Manifest:
        """Publish one file as artifact ``key``; it keeps its file name inside the artifact."""
        local_file = Path(local_file)
        if not local_file.is_file():
            raise ValueError(f"cannot publish {local_file}: not a file")
        return self._publish(check_key(key), [(local_file.name, local_file)], progress)

    def get_dir(self, key: str, local_dir: str | Path) -> Path:
        """Download and verify artifact ``key`` into ``local_dir`` (absent or empty); returns it."""
        local_dir = Path(local_dir)
        if local_dir.exists() and (not local_dir.is_dir() or any(local_dir.iterdir())):
            raise ValueError(f"cannot download into {local_dir}: it exists and is not an empty directory")
        local_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = local_dir.parent / f".{local_dir.name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            self._fetch_verified(check_key(key), staging, lambda files: files)
            if local_dir.exists():
                local_dir.rmdir()
            os.replace(staging, local_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return local_dir

    def get_file(self, key: str, local_path: str | Path) -> Path:
        """Download and verify a one-file artifact to ``local_path`` (an existing directory: keep its name)."""
        key, local_path = check_key(key), Path(local_path)
        (local_path if local_path.is_dir() else local_path.parent).mkdir(parents=True, exist_ok=True)
        staging = (local_path if local_path.is_dir() else local_path.parent) / f".fetch-{uuid.uuid4().hex[:8]}"
        try:
            manifest = self._fetch_verified(key, staging, lambda files: self._single(key, files))
            name = manifest.files[0].path
            dest = local_path / PurePosixPath(name).name if local_path.is_dir() else local_path
            os.replace(staging / name, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return dest

    def exists(self, key: str) -> bool:
        """True when ``key`` has a manifest (a complete publish)."""
        try:
            self._read_bytes(f"{check_key(key)}/{MANIFEST}")
        except ObjectMissing:
            return False
        return True

    def manifest(self, key: str) -> Manifest:
        manifest, _ = self._manifest_tagged(check_key(key))
        if manifest is None:
            raise ArtifactNotFound(f"no artifact {self._describe(key)} (no {MANIFEST})")
        return manifest

    def list(self, prefix: str = "") -> list[str]:
        """Keys of the published artifacts whose key starts with ``prefix``, sorted."""
        keys = []
        for name in self._list_names(prefix.lstrip("/")):
            if name.endswith("/" + MANIFEST) and f"/{VERSIONS}/" not in "/" + name:
                keys.append(name[: -len(MANIFEST) - 1])
        return sorted(keys)

    def delete(self, key: str) -> bool:
        """Remove artifact ``key`` (manifest first, so readers stop trusting it); False if it was absent."""
        key = check_key(key)
        existed = self.exists(key)
        if existed:
            self._delete_names([f"{key}/{MANIFEST}"])
        self._delete_names(list(self._list_names(f"{key}/{VERSIONS}/")))
        return existed

    def put_document(self, key: str, payload: dict[str, Any]) -> None:
        """Store a small JSON document as ONE object (atomic by itself); for pointers such as LATEST."""
        self._upload_bytes(check_key(key), _document_bytes(payload))

    def get_document(self, key: str) -> dict[str, Any] | None:
        """The JSON document at ``key``, or None when there is none."""
        return self.get_document_tagged(key)[0]

    def get_document_tagged(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """(document, tag) at ``key``, (None, None) when there is none; the tag feeds ``replace_document``."""
        name = check_key(key)
        try:
            data, tag = self._read_tagged(name)
        except ObjectMissing:
            return None, None
        try:
            return json.loads(data), tag
        except ValueError:
            raise StoreError(f"document {self._describe(name)} is not valid JSON") from None

    def replace_document(self, key: str, payload: dict[str, Any], *, tag: str | None) -> bool:
        """Write the document only if it is still the one read with ``tag`` (None: only if there is none);
        False when another writer changed it first (read it again and decide)."""
        name, data = check_key(key), _document_bytes(payload)
        try:
            self._commit(name, data, tag=tag)
        except PreconditionFailed:
            return False
        return self.conditional_writes or self._read_or_none(name) == data

    def check_access(self, *, write: bool = False) -> None:
        """Fail fast, before any work: StoreAuthError for rejected credentials, StoreError when the store
        cannot be used, StoreUnavailable when it cannot be reached. ``write`` also writes and deletes a
        probe object (and, on S3, finds out whether the endpoint honours conditional writes)."""
        list(self._list_objects(f"{PROBE_DIR}/probe-none/"))
        if write:
            name = f"{PROBE_DIR}/probe-{uuid.uuid4().hex}"
            self._upload_bytes(name, b"hybridmi write probe\n")
            self._delete_names([name])
            _ = self.conditional_writes

    def _read_or_none(self, name: str) -> bytes | None:
        try:
            return self._read_bytes(name)
        except ObjectMissing:
            return None

    def _manifest_tagged(self, key: str, *, lenient: bool = False) -> tuple[Manifest | None, str | None]:
        """(manifest, tag), (None, None) when absent; ``lenient``: an unreadable manifest is (None, its tag)."""
        name = f"{key}/{MANIFEST}"
        try:
            data, tag = self._read_tagged(name)
        except ObjectMissing:
            return None, None
        try:
            return Manifest.from_json(data, where=self._describe(name)), tag
        except StoreError as exc:
            if not lenient:
                raise
            log.warning("%s; a new publish replaces it", exc)
            return None, tag

    # -- reading ----------------------------------------------------------------------------------
    @staticmethod
    def _single(key: str, files: tuple[FileEntry, ...]) -> tuple[FileEntry, ...]:
        if len(files) != 1:
            raise ValueError(f"artifact {key!r} holds {len(files)} files; get_file needs exactly one (use get_dir)")
        return files

    def _fetch_verified(self, key: str, staging: Path, select: Callable[[tuple[FileEntry, ...]], Any]) -> Manifest:
        """Download the manifest's files into ``staging`` and verify them; restart if a republish races us."""
        for _ in range(3):
            manifest = self.manifest(key)
            select(manifest.files)
            try:
                self._download_all(key, manifest, staging)
                return manifest
            except ObjectMissing as missing:
                if self.manifest(key).version == manifest.version:
                    raise StoreError(
                        f"artifact {self._describe(key)} is damaged: {self._describe(str(missing))} "
                        f"is listed in its manifest but missing"
                    ) from None
                shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"artifact {self._describe(key)} kept changing while it was being read")

    def _download_all(self, key: str, manifest: Manifest, staging: Path) -> None:
        for entry in manifest.files:
            name = f"{key}/{VERSIONS}/{manifest.version}/{entry.path}"
            dest = staging / entry.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            digest = self._download(name, dest)
            size = dest.stat().st_size
            if digest != entry.sha256 or size != entry.size:
                raise ChecksumMismatch(
                    f"checksum mismatch for {self._describe(name)}: got sha256 {digest} "
                    f"({size} bytes), manifest says {entry.sha256} ({entry.size} bytes)"
                )


def _document_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, sort_keys=True) + "\n").encode()
