"""Temporary working directories that do not outlive their process, even one killed with SIGKILL.

A scratch directory ``<tmp>/<prefix><random>`` holds an open, ``flock``-ed ``.owner`` file for as long as
its process lives; the kernel drops the lock when the process dies, however it dies. Opening a new
scratch directory first removes every directory of the same prefix whose lock can be taken: those
whose owner is gone (killed with -9, or OOM-killed). A normal exit, an exception, and SIGTERM (turned
into ``SystemExit`` by ``exit_on_sigterm``) remove the directory on the way out; ``keep`` turns that off
for a directory that holds something the user must not lose.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
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
def scratch_dir(prefix: str, *, root: Path | None = None) -> Iterator[Scratch]:
    """A fresh scratch directory, removed when the block ends unless kept; stale ones are swept first."""
    remove_stale(prefix, root=root)
    hidden = Path(tempfile.mkdtemp(prefix=f".{prefix}", dir=root))  # locked before a sweep can see it
    fd = os.open(hidden / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    path = hidden.with_name(hidden.name[1:])
    os.rename(hidden, path)
    scratch = Scratch(path)
    try:
        yield scratch
    finally:
        if scratch.kept:
            os.close(fd)
        else:
            shutil.rmtree(path, ignore_errors=True)
            os.close(fd)


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Within the block (main thread only), SIGTERM raises SystemExit(143), so ``finally`` blocks and
    context managers (scratch directories, metrics, failure records) run as they do for Ctrl-C."""

    def handler(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
