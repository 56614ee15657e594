"""Scratch directories: removed on exit and on SIGTERM, swept after SIGKILL, kept when asked; real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from hybridmi.task.scratch import remove_stale, scratch_dir

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from pathlib import Path
from hybridmi.task.scratch import exit_on_sigterm, scratch_dir
with exit_on_sigterm(), scratch_dir("hx-", root=Path(sys.argv[1])) as s:
    (s.path / "work.bin").write_bytes(b"x" * 1000)
    print(s.path, flush=True)
    time.sleep(120)
"""


def holder(root: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return proc, Path(proc.stdout.readline().strip())


def test_scratch_dir__removed_when_the_block_ends_and_kept_when_asked(tmp_path):
    with scratch_dir("hx-", root=tmp_path) as s:
        assert s.path.is_dir() and s.path.name.startswith("hx-")
    assert not s.path.exists()
    with scratch_dir("hx-", root=tmp_path) as kept:
        assert kept.keep("unpublished") == kept.path
    assert kept.path.is_dir()
    assert remove_stale("hx-", root=tmp_path) == [] and kept.path.is_dir()


def test_sigterm__unwinds_and_removes_the_directory(tmp_path):
    proc, path = holder(tmp_path)
    assert path.is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert not path.exists()


def test_sigkill__leftover_is_swept_by_the_next_process_and_a_live_ones_is_not(tmp_path):
    victim, dead = holder(tmp_path)
    alive, live = holder(tmp_path)
    victim.kill()
    victim.wait(timeout=30)
    assert dead.is_dir()
    with scratch_dir("hx-", root=tmp_path) as mine:
        assert not dead.exists() and live.is_dir() and mine.path.is_dir()
    alive.send_signal(signal.SIGTERM)
    alive.wait(timeout=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
