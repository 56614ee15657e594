"""The embedded backend: an artifact store in a local directory (same layout and guarantees as S3)."""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Iterable, Iterator

from hybridmi.runtime import atomic_path, atomic_write_bytes
from hybridmi.store.base import ArtifactStore
from hybridmi.store.manifest import ObjectMissing

_CHUNK = 1 << 20


class LocalStore(ArtifactStore):
    """Objects are files under ``root``; every write goes to a temporary file and is ``os.replace``-d in."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.uri = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        return self.root / name

    def _describe(self, name: str) -> str:
        return str(self._path(name))

    def _upload(self, name: str, src: Path, *, size: int, sha256: str) -> None:
        with atomic_path(self._path(name), suffix=".part") as tmp, open(tmp, "wb") as out, open(src, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                out.write(chunk)

    def _upload_bytes(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self._path(name), data)

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

    def _read_bytes(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectMissing(name) from None

    def _list_names(self, prefix: str) -> Iterator[str]:
        # The deepest existing directory that contains every name with this prefix.
        base = self._path(prefix) if not prefix or prefix.endswith("/") else self._path(prefix).parent
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            name = path.relative_to(self.root).as_posix()
            if path.is_file() and name.startswith(prefix):
                yield name

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
