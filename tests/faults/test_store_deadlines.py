"""Object storage that hangs or crawls: a silent endpoint (accepts connections, never answers) fails a stage's
access probe within a minute and every store operation at its deadline; a throttled store never slows the
trainer's checkpoint callback, and the final flush still delivers the last step."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import pytest
from faultkit import last_line, run, stage
from store_testkit import TEST_KEY, TEST_SECRET, SilentServer, TcpProxy, make_client

from hybridmi.runtime import atomic_write_bytes
from hybridmi.store import CheckpointSync, S3Store
from hybridmi.store.uri import CONTROL_TIMEOUT

# Store operations against a silent endpoint, timed inside one process; prints {operation: [seconds, outcome]}.
SILENT_OPERATIONS = r"""
import json, sys, time
from pathlib import Path
from hybridmi.store import CheckpointSync, StoreError, store_from_env

store, out = store_from_env("s3://bucket/p"), {}
for name, op in [("exists", lambda: store.exists("k")), ("read", lambda: store.get_document("k/LATEST"))]:
    start = time.monotonic()
    try:
        op()
    except StoreError as exc:
        out[name] = [time.monotonic() - start, str(exc)]
sync, start = CheckpointSync(store, "ckpt", run_id="r"), time.monotonic()
sync.on_checkpoint(Path(sys.argv[1]), 2)
out["on_checkpoint"] = [time.monotonic() - start, None]
out["flush"] = [None, sync.flush(timeout_s=60)]
out["flush"][0] = time.monotonic() - start
print(json.dumps(out))
"""


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


def silent_env(env: dict[str, str], port: int, **extra: str) -> dict[str, str]:
    endpoint = f"http://127.0.0.1:{port}"
    return {
        **env,
        "HYBRIDMI_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": TEST_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET,
        **extra,
    }


def test_silent_endpoint__a_stage_fails_its_access_probe_within_a_minute(silent, env, tmp_path):
    env = silent_env(env, silent.port, HYBRIDMI_STORE="s3://bucket/p")  # the default retries, as a pod has them
    start = time.monotonic()
    done = run(
        stage("prepare", overrides=[f"data.cache_dir={tmp_path / 'c'}"], outputs={"dataset": tmp_path / "ds"}),
        env,
        timeout=90,
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 1 and elapsed < 60, (elapsed, done.stderr[-3000:])
    line = last_line(done.stderr)
    assert line.startswith("hybridmi: error: object storage unreachable") and f"127.0.0.1:{silent.port}" in line
    assert "deadline" in line and not (tmp_path / "ds").exists()


def test_silent_endpoint__every_operation_stops_at_its_deadline_and_the_mirror_only_warns(silent, env, tmp_path):
    deadline_s = 5.0
    env = silent_env(env, silent.port, HYBRIDMI_S3_DEADLINE_S=str(deadline_s))
    checkpoint = atomic_write_bytes(tmp_path / "w" / "last.pt", b"state@2")
    done = run([sys.executable, "-c", SILENT_OPERATIONS, str(checkpoint)], env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    bound = deadline_s + CONTROL_TIMEOUT.connect_timeout + CONTROL_TIMEOUT.read_timeout  # the last try may start late
    for name in ("exists", "read"):
        seconds, message = out[name]
        assert seconds < bound and "object storage unreachable" in message and "5 s deadline" in message, out
    assert out["on_checkpoint"][0] < 0.5 and out["flush"][1] is False and out["flush"][0] < bound + 1, out
    assert "training continues" in done.stderr and "kept locally at" in done.stderr


def test_throttled_store__on_checkpoint_returns_at_once_and_flush_delivers_the_last_step(
    moto_endpoint, bucket, tmp_path, caplog
):
    proxy = TcpProxy(int(moto_endpoint.rsplit(":", 1)[1]), rate_bps=1_000_000)  # about 1 MB/s each way
    proxy.start()
    caplog.set_level(logging.INFO, logger="hybridmi.store.checkpoints")
    try:
        sync = CheckpointSync(S3Store(make_client(f"127.0.0.1:{proxy.port}"), bucket, "p"), "run/ckpt", run_id="r1")
        direct = CheckpointSync(S3Store(make_client(moto_endpoint), bucket, "p"), "run/ckpt", run_id="r1")
        payloads = {step: os.urandom(1_500_000) for step in (2, 4, 6, 8)}  # 1.5 s each through the proxy
        last = tmp_path / "w" / "last.pt"
        latencies = []

        def checkpoint(step: int) -> None:
            start = time.monotonic()
            sync.on_checkpoint(last, step)
            latencies.append(time.monotonic() - start)

        atomic_write_bytes(last, payloads[2])  # replaced by rename, as the trainer does
        checkpoint(2)
        assert direct.latest_step() is None  # returned while its upload is in flight
        atomic_write_bytes(last, payloads[4])  # the trainer moves on meanwhile
        assert sync.flush() is True
        assert direct.download_latest(tmp_path / "pod1").read_bytes() == payloads[2]  # the upload was not torn
        for step in (4, 6, 8):
            atomic_write_bytes(last, payloads[step])
            checkpoint(step)
        assert sync.flush() is True
        assert direct.download_latest(tmp_path / "pod2").read_bytes() == payloads[8]
    finally:
        proxy.stop()
    assert max(latencies) < 0.25, latencies  # on the training thread each upload took > 1.5 s
    mirrored = [r.args[0] for r in caplog.records if r.getMessage().startswith("checkpoint for step")]
    assert mirrored[0] == 2 and mirrored[-1] == 8 and len(mirrored) <= 3, mirrored  # newer ones replace waiting ones
    assert not list(last.parent.glob(".mirror-*"))  # every snapshot released
