"""What every artifact store does, written once over the blob primitives that each backend supplies.

Layout of an artifact published under ``key`` (relative to the store's root):

    <key>/MANIFEST.json                   written LAST: format, key, version, [{path, size, sha256}]
    <key>/.versions/<version>/<path>      the files of one publish (a fresh version id each time)

A publish uploads every file under a fresh version prefix, then writes the manifest (one atomic
object PUT on S3, one ``os.replace`` on a local disk), then deletes every other version. Readers only
trust keys that have a manifest and verify each file's size and sha256 against it, so a reader sees
either the previous complete version or the new complete version, never a mix, and an interrupted
publish leaves the previous manifest (and the objects it names) intact. A reader whose version is
pruned under it by a racing republish re-reads the manifest and starts again. One writer per key.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator

from hybridmi.store.manifest import (MANIFEST, VERSIONS, ArtifactNotFound, ChecksumMismatch, FileEntry, Manifest,
                                     ObjectMissing, StoreError, check_key, new_version, sha256_file)

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]  # (relative path, bytes) after each file is stored


class ArtifactStore:
    """Publish and fetch directories/files atomically with sha256 verification.

    Backends implement ``_upload``, ``_upload_bytes``, ``_download``, ``_read_bytes``, ``_list_names``,
    ``_delete_names`` and ``_describe`` over object names relative to the store root.
    """

    uri: str

    # -- primitives -------------------------------------------------------------------------------
    def _upload(self, name: str, src: Path, *, size: int, sha256: str) -> None:
        raise NotImplementedError

    def _upload_bytes(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def _download(self, name: str, dest: Path) -> str:
        """Stream object ``name`` into ``dest``; return the sha256 of what was written. ObjectMissing if absent."""
        raise NotImplementedError

    def _read_bytes(self, name: str) -> bytes:
        """The object's bytes; ObjectMissing if absent."""
        raise NotImplementedError

    def _list_names(self, prefix: str) -> Iterator[str]:
        raise NotImplementedError

    def _delete_names(self, names: Iterable[str]) -> None:
        raise NotImplementedError

    def _describe(self, name: str) -> str:
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------------
    def put_dir(self, local_dir: str | Path, key: str, *, progress: Progress | None = None) -> Manifest:
        """Publish every file under ``local_dir`` as artifact ``key`` (replacing any previous version)."""
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise ValueError(f"cannot publish {local_dir}: not a directory")
        files = sorted((p.relative_to(local_dir).as_posix(), p) for p in local_dir.rglob("*") if p.is_file())
        if not files:
            raise ValueError(f"cannot publish {local_dir}: it contains no files")
        return self._publish(check_key(key), files, progress)

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
        key = check_key(key)
        name = f"{key}/{MANIFEST}"
        try:
            data = self._read_bytes(name)
        except ObjectMissing:
            raise ArtifactNotFound(f"no artifact {self._describe(key)} (no {MANIFEST})") from None
        return Manifest.from_json(data, where=self._describe(name))

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
        self._upload_bytes(check_key(key), (json.dumps(payload, sort_keys=True) + "\n").encode())

    def get_document(self, key: str) -> dict[str, Any] | None:
        """The JSON document at ``key``, or None when there is none."""
        name = check_key(key)
        try:
            data = self._read_bytes(name)
        except ObjectMissing:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise StoreError(f"document {self._describe(name)} is not valid JSON") from None

    # -- shared machinery -------------------------------------------------------------------------
    def _publish(self, key: str, files: list[tuple[str, Path]], progress: Progress | None) -> Manifest:
        version = new_version()
        entries = []
        for rel, path in files:
            size, digest = path.stat().st_size, sha256_file(path)
            self._upload(f"{key}/{VERSIONS}/{version}/{rel}", path, size=size, sha256=digest)
            entries.append(FileEntry(rel, size, digest))
            if progress is not None:
                progress(rel, size)
        manifest = Manifest(key, version, tuple(entries), time.time())
        self._upload_bytes(f"{key}/{MANIFEST}", manifest.to_json())
        log.info("published %s (%d files, %d bytes, version %s)", self._describe(key), len(entries),
                 manifest.total_bytes, version)
        self._prune(key, keep=version)
        return manifest

    def _prune(self, key: str, *, keep: str) -> None:
        """Delete every version of ``key`` but ``keep``; a failure only leaves garbage behind."""
        live = f"{key}/{VERSIONS}/{keep}/"
        try:
            stale = [n for n in self._list_names(f"{key}/{VERSIONS}/") if not n.startswith(live)]
            self._delete_names(stale)
        except StoreError as exc:
            log.warning("could not remove old versions of %s: %s", self._describe(key), exc)

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
                self._download_all(manifest, staging)
                return manifest
            except ObjectMissing as missing:
                if self.manifest(key).version == manifest.version:
                    raise StoreError(f"artifact {self._describe(key)} is damaged: {self._describe(str(missing))} "
                                     f"is listed in its manifest but missing") from None
                shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"artifact {self._describe(key)} kept changing while it was being read")

    def _download_all(self, manifest: Manifest, staging: Path) -> None:
        for entry in manifest.files:
            name = f"{manifest.key}/{VERSIONS}/{manifest.version}/{entry.path}"
            dest = staging / entry.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            digest = self._download(name, dest)
            size = dest.stat().st_size
            if digest != entry.sha256 or size != entry.size:
                raise ChecksumMismatch(f"checksum mismatch for {self._describe(name)}: got sha256 {digest} "
                                       f"({size} bytes), manifest says {entry.sha256} ({entry.size} bytes)")
