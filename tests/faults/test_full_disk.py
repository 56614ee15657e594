"""A full disk under a local store: publishing into it and downloading onto it raise a StoreError naming the file
and the cause, and a checkpoint mirror on it only warns (training goes on). The disk is a 1 MiB tmpfs (root), or
else a 1 MiB file-size limit on the process (RLIMIT_FSIZE: writes past it fail with EFBIG)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import pytest
from faultkit import ROOT

from hybridmi.runtime import atomic_write_bytes
from hybridmi.store import LocalStore

MiB = 1 << 20
SCENARIO = r"""
import json, sys
from pathlib import Path
from hybridmi.store import CheckpointSync, LocalStore, StoreError

disk, src, out = Path(sys.argv[1]), Path(sys.argv[2]), {}
full = LocalStore(disk / "store")
for name, op in [
    ("put", lambda: full.put_file(src / "big.bin", "models/m")),
    ("get", lambda: LocalStore(src / "store").get_dir("models/m", disk / "out")),
]:
    try:
        op()
    except StoreError as exc:
        out[name] = [type(exc).__name__, str(exc)]
sync = CheckpointSync(full, "ckpt", run_id="r")
sync.on_checkpoint(src / "w" / "last.pt", 2)
out["flush"] = sync.flush(timeout_s=30)
print(json.dumps(out))
"""


def _no_bigger_files() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, MiB))


@pytest.fixture(params=["tmpfs", "rlimit"])
def full_disk(request, tmp_path):
    """(directory on a 1 MiB disk, preexec_fn for the scenario's process, the errno text a full disk gives)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if request.param == "rlimit":
        yield disk, _no_bigger_files, "File too large"
        return
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the rlimit case covers the same code")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk, None, "No space left on device"
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_full_disk__store_errors_name_the_file_and_a_mirror_on_it_only_warns(full_disk, tmp_path):
    disk, preexec, cause = full_disk
    src = tmp_path / "src"
    atomic_write_bytes(src / "big.bin", os.urandom(2 * MiB))
    atomic_write_bytes(src / "w" / "last.pt", os.urandom(2 * MiB))
    LocalStore(src / "store").put_file(src / "big.bin", "models/m")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(disk), str(src)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
    )
    assert done.returncode == 0, done.stderr[-3000:]  # no OSError escaped
    out = json.loads(done.stdout)
    kind, message = out["put"]
    assert kind == "StoreIOError" and cause in message and str(src / "big.bin") in message, message
    assert str(disk / "store" / "models" / "m") in message
    kind, message = out["get"]
    assert kind == "StoreIOError" and cause in message and str(disk) in message and "models/m/" in message, message
    assert out["flush"] is False
    assert "training continues" in done.stderr and cause in done.stderr and "Traceback" not in done.stderr
    assert not list(disk.rglob("*.part")) and not (disk / "out").exists()  # nothing half-written left behind
