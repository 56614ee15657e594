"""The manifest that makes a publish atomic, the errors every store raises, and key/path validation."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterator

from hybridmi.errors import HybridmiError

MANIFEST = "MANIFEST.json"
VERSIONS = ".versions"
FORMAT = "hybridmi-artifact/1"
_KEY_PART = re.compile(r"^[A-Za-z0-9_\-=+,@][A-Za-z0-9_.\-=+,@]*$")


class StoreError(HybridmiError, RuntimeError):
    """A storage operation that cannot complete; the message names the object and where it lives."""


class ArtifactNotFound(StoreError, FileNotFoundError):
    """No published (manifest-bearing) artifact under this key."""


class ChecksumMismatch(StoreError):
    """A stored object's bytes do not match the sha256/size its manifest records."""


class StoreAuthError(StoreError, PermissionError):
    """The storage service rejected the credentials (never retried)."""


class StoreUnavailable(StoreError, ConnectionError):
    """The storage service stayed unreachable until its retries or its deadline were spent."""


class StoreIOError(StoreError, OSError):
    """A file of the store or a local file of the transfer failed (a full disk, a read-only directory)."""


class PublishConflict(StoreError):
    """Another writer published the same key while this publish was in flight, and its version stands."""


class ObjectMissing(Exception):
    """Internal: the object a primitive was asked for does not exist."""


class PreconditionFailed(Exception):
    """Internal: a conditional write found the object not as its condition required."""


@contextlib.contextmanager
def os_errors(what: str) -> Iterator[None]:
    """Turn an OSError raised inside into a StoreIOError '<what> failed: <cause>'."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise StoreIOError(f"{what} failed: {exc}") from None


@dataclass(frozen=True)
class FileEntry:
    path: str  # POSIX path relative to the artifact root
    size: int  # bytes
    sha256: str  # hex digest


@dataclass(frozen=True)
class Manifest:
    key: str  # the key it was published under, relative to the publisher's store root: informative only
    version: str
    files: tuple[FileEntry, ...]
    created_unix: float

    def to_json(self) -> bytes:
        files = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]
        doc = {"format": FORMAT, "key": self.key, "version": self.version, "created_unix": self.created_unix}
        return (json.dumps({**doc, "files": files}, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> "Manifest":
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r} is not {FORMAT!r}")
            files = tuple(FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in doc["files"])
            for path in (PurePosixPath(f.path) for f in files):  # every file stays inside the artifact
                if path.is_absolute() or not path.parts or any(part in ("..", ".", "") for part in path.parts):
                    raise ValueError(f"path {str(path)!r} escapes the artifact directory")
            return cls(str(doc["key"]), str(doc["version"]), files, float(doc["created_unix"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"manifest {where} is unreadable: {exc}") from None


def check_key(key: str) -> str:
    """A key is '/'-separated parts of [A-Za-z0-9_.-=+,@], none starting with '.' nor named MANIFEST.json."""
    parts = key.strip("/").split("/")
    if not key.strip("/") or any(not _KEY_PART.match(p) or p == MANIFEST for p in parts):
        raise ValueError(
            f"artifact key {key!r} is invalid: use '/'-separated parts of letters, digits, _.-=+,@ "
            f"not starting with '.' and not named {MANIFEST}"
        )
    return "/".join(parts)


def new_version() -> str:
    """Sortable, unique: UTC time then 12 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:12]
