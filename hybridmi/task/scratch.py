"""Temporary working directories that do not outlive their process, even one killed with SIGKILL, unless they
hold work not yet safe elsewhere (kept, and taken over by the next process with the same key)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

OWNER = ".owner"
KEPT = ".kept"  # a directory holding this file is left alone by the stale-directory sweep


class Scratch:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.kept = False

    def keep(self, reason: str) -> Path:
        """Leave the directory in place when the block ends (it holds something unpublished); returns it."""
        (self.path / KEPT).write_text(reason + "\n")
        self.kept = True
        return self.path

    def release(self) -> None:
        """Remove the directory when the block ends after all (its work is safe elsewhere)."""
        (self.path / KEPT).unlink(missing_ok=True)
        self.kept = False


def _owner_gone(directory: Path) -> bool:
    try:
        fd = os.open(directory / OWNER, os.O_RDWR)
    except FileNotFoundError:
        return True  # a directory that never got its lock (its owner died while creating it)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live process holds it
    finally:
        os.close(fd)
    return True


def remove_stale(prefix: str, *, root: Path | None = None) -> list[Path]:
    """Remove the scratch directories of ``prefix`` whose process is gone (and that were not kept)."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for directory in sorted(root.glob(f"{prefix}*")):
        if directory.is_dir() and not (directory / KEPT).exists() and _owner_gone(directory):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    if removed:
        log.info("removed %d scratch directories left by killed processes under %s", len(removed), root)
    return removed


@contextlib.contextmanager
def scratch_dir(prefix: str, *, root: Path | None = None, key: str | None = None) -> Iterator[Scratch]:
    """A scratch directory, removed when the block ends unless kept; stale ones are swept first.

    With ``key`` the directory is ``<prefix><key>``: a kept one whose process is gone is taken over (its work
    continues), and the block's directory is kept from the start, so that neither SIGTERM nor SIGKILL nor a
    sweep removes what it holds; the caller ends it with ``Scratch.release`` once its work is safe elsewhere.
    While a live process holds the key, another one with the same key works in a fresh, unkept directory.
    """
    remove_stale(prefix, root=root)
    root = Path(root or tempfile.gettempdir())
    keyed = root / f"{prefix}{key}" if key is not None else None
    fd = _take_over(keyed) if keyed is not None and keyed.is_dir() else None
    if fd is not None:
        path = keyed
        log.warning("continuing from the work kept in %s (%s)", path, _reason(path))
    else:
        hidden = Path(tempfile.mkdtemp(prefix=f".{prefix}", dir=root))  # locked before a sweep can see it
        fd = os.open(hidden / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = hidden.with_name(hidden.name[1:])
        if keyed is not None:
            try:
                os.rename(hidden, keyed)  # fails when another process holds the key (its directory is not empty)
                path = keyed
            except OSError:
                log.info("another process works on the same outputs in %s; this one works in %s", keyed, path)
        if path != keyed:
            os.rename(hidden, path)
    scratch = Scratch(path)
    if path == keyed:
        scratch.keep("work of a process that may be stopped before it publishes")
    try:
        yield scratch
    finally:
        if not scratch.kept:
            shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _take_over(path: Path) -> int | None:
    """The locked owner file of a keyed directory whose process is gone; None while a live process holds it."""
    fd = os.open(path / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        log.info("another process works on the same outputs in %s", path)
        return None
    return fd


def _reason(path: Path) -> str:
    try:
        return (path / KEPT).read_text().strip()
    except OSError:
        return "no reason recorded"
