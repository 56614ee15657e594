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
from hybridmi.runtime import sigterm_handling
from hybridmi.task.scratch import scratch_dir
key = sys.argv[2] if len(sys.argv) > 2 else None
with sigterm_handling(), scratch_dir("hx-", root=Path(sys.argv[1]), key=key) as s:
    (s.path / "work.bin").write_bytes(b"x" * 1000)
    print(s.path, flush=True)
    time.sleep(120)
"""


def holder(root: Path, *key: str) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), *key],
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


def test_keyed_scratch__survives_sigterm_sigkill_and_sweeps_and_is_taken_over_by_the_same_key(tmp_path):
    for stop in (signal.SIGTERM, signal.SIGKILL):
        proc, path = holder(tmp_path, "k1")
        proc.send_signal(stop)
        proc.wait(timeout=30)
        assert (path / "work.bin").is_file()
        with scratch_dir("hx-", root=tmp_path) as other:  # another process's sweep leaves it alone
            assert path.is_dir() and other.path != path
        with scratch_dir("hx-", root=tmp_path, key="k1") as again:
            assert again.path == path and (path / "work.bin").is_file()  # the work continues
            if stop == signal.SIGKILL:
                again.release()  # its work is safe elsewhere now
        assert path.is_dir() == (stop == signal.SIGTERM)


def test_keyed_scratch__in_use_by_a_live_process__another_one_works_in_a_fresh_directory(tmp_path):
    proc, path = holder(tmp_path, "k2")
    try:
        with scratch_dir("hx-", root=tmp_path, key="k2") as other:
            assert other.path != path and not other.kept and path.is_dir()
        assert not other.path.exists() and (path / "work.bin").is_file()
    finally:
        proc.kill()
        proc.wait(timeout=30)
