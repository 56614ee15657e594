"""The embedded backend: an artifact store in a local directory (same layout and guarantees as S3)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator

from hybridmi.runtime import atomic_path, atomic_write_bytes
from hybridmi.store.base import ArtifactStore
from hybridmi.store.manifest import ObjectMissing, PreconditionFailed

_CHUNK = 1 << 20


class LocalStore(ArtifactStore):
    """Objects are files under ``root``; every write goes to a temporary file and is ``os.replace``-d in.

    Conditional writes hold an exclusive ``flock`` on the root directory across the check and the replace,
    so they are atomic between processes on one machine (and on file systems with working locks).
    """

    def __init__(self, root: str | Path, *, prune_grace_s: float = ArtifactStore.prune_grace_s) -> None:
        self.root = Path(root).absolute()
        self.uri = self.root.as_uri()
        self.prune_grace_s = prune_grace_s

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        return self.root / name

    def _describe(self, name: str) -> str:
        return str(self._path(name))

    @property
    def conditional_writes(self) -> bool:
        return True

    def _upload(self, name: str, src: Path, *, size: int, sha256: str) -> None:
        with atomic_path(self._path(name), suffix=".part") as tmp, open(tmp, "wb") as out, open(src, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                out.write(chunk)

    def _upload_bytes(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self._path(name), data)

    def _write_conditional(self, name: str, data: bytes, *, tag: str | None) -> None:
        with self._locked():
            try:
                current = self._read_tagged(name)[1]
            except ObjectMissing:
                current = None
            if current != tag:
                raise PreconditionFailed(name)
            atomic_write_bytes(self._path(name), data)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _download(self, name: str, dest: Path) -> str:
        digest = hashlib.sha256()
        try:
            with open(self._path(name), "rb") as fh, open(dest, "wb") as out:
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except FileNotFoundError:
            raise ObjectMissing(name) from None
        return digest.hexdigest()

    def _read_tagged(self, name: str) -> tuple[bytes, str]:
        try:
            data = self._path(name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectMissing(name) from None
        return data, hashlib.sha256(data).hexdigest()

    def _list_objects(self, prefix: str) -> Iterator[tuple[str, float]]:
        # The deepest existing directory that contains every name with this prefix; os.walk skips
        # directories that a concurrent writer removes while we walk.
        base = self._path(prefix) if not prefix or prefix.endswith("/") else self._path(prefix).parent
        found = []
        for directory, _, files in os.walk(base):
            for file in files:
                path = Path(directory) / file
                name = path.relative_to(self.root).as_posix()
                if name.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):  # a concurrent writer's temporary file, gone
                        found.append((name, path.stat().st_mtime))
        return iter(sorted(found))

    def _delete_names(self, names: Iterable[str]) -> None:
        for name in names:
            path = self._path(name)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._remove_empty_parents(path.parent)

    def _remove_empty_parents(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent
