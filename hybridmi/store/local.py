"""The embedded backend: an artifact store in a local directory (same layout and guarantees as S3)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import IO, Iterable, Iterator

from hybridmi.runtime import atomic_path, atomic_write_bytes
from hybridmi.store.base import ArtifactStore, write_hashed
from hybridmi.store.manifest import ObjectMissing, os_errors

_CHUNK = 1 << 20
_ABSENT = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


class LocalStore(ArtifactStore):
    """Objects are files under ``root``; every write goes to a temporary file and is ``os.replace``-d in. An OSError
    (a full disk, a read-only directory) is a StoreIOError naming the file."""

    conditional_writes = True

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.uri = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _describe(self, name: str) -> str:
        return str(self.root / name)

    def _open(self, name: str) -> IO[bytes]:
        try:
            return open(self.root / name, "rb")
        except _ABSENT:
            raise ObjectMissing(name) from None

    def _upload(self, name: str, src: Path, *, size: int, sha256: str) -> None:
        with os_errors(f"upload {src} to {self._describe(name)}"):
            with atomic_path(self.root / name, suffix=".part") as tmp, open(tmp, "wb") as out, open(src, "rb") as fh:
                shutil.copyfileobj(fh, out, _CHUNK)

    def _upload_bytes(self, name: str, data: bytes) -> None:
        with os_errors(f"write {self._describe(name)}"):
            atomic_write_bytes(self.root / name, data)

    def _write_conditional(self, name: str, data: bytes, *, tag: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time, across processes
            self._check_then_write(name, data, tag=tag)
        finally:
            os.close(fd)  # releases the lock

    def _download(self, name: str, dest: Path) -> str:
        with os_errors(f"download {self._describe(name)} to {dest}"), self._open(name) as fh:
            return write_hashed(iter(lambda: fh.read(_CHUNK), b""), dest)

    def _read_tagged(self, name: str) -> tuple[bytes, str]:
        with os_errors(f"read {self._describe(name)}"), self._open(name) as fh:
            data = fh.read()
        return data, hashlib.sha256(data).hexdigest()

    def _list_objects(self, prefix: str) -> Iterator[tuple[str, float]]:
        # The deepest directory that holds every name with this prefix; os.walk skips directories that a
        # concurrent writer removes while we walk.
        base = self.root / prefix if not prefix or prefix.endswith("/") else (self.root / prefix).parent
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
            with os_errors(f"delete {self.root / name}"), contextlib.suppress(FileNotFoundError):
                (self.root / name).unlink()
            for parent in Path(name).parents[:-1]:  # remove the directories left empty
                try:
                    (self.root / parent).rmdir()
                except OSError:
                    break
