"""Hybrid training with its checkpoints mirrored to a slow store, against training with no store.

The store is a moto S3 server behind a TCP proxy throttled to ``--rate`` bytes/s each way, both in their own
processes (as a remote store would be). The same training runs twice in this process: without a mirror, and
with the checkpoint mirror of every pipeline task; it prints the training time of each, their ratio, and how
long the final flush then waited for the last upload.

    .venv/bin/python bench/mirror_overhead.py --rate 1e6 --epochs 2 --checkpoint-every 10
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import urllib3
from minio import Minio

from hybridmi.config import load_config
from hybridmi.data.synthetic import make_synthetic
from hybridmi.store import CheckpointSync, S3Store
from hybridmi.train.hybrid import train_hybrid

ROOT = Path(__file__).resolve().parents[1]
PROXY = """
import socket, sys, threading, time
target, port, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def pump(src, dst):
    try:
        while data := src.recv(16384):
            dst.sendall(data)
            time.sleep(len(data) / rate)
    except OSError:
        pass
    finally:
        src.close(); dst.close()
listener = socket.create_server(("127.0.0.1", port))
while True:
    client, _ = listener.accept()
    upstream = socket.create_connection(("127.0.0.1", target))
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pump, args=(a, b), daemon=True).start()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1e6, help="store bandwidth each way, bytes/s")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--checkpoint-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    moto_port, proxy_port = free_port(), free_port()
    servers = [
        subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(moto_port)], stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-c", PROXY, str(moto_port), str(proxy_port), str(args.rate)]),
    ]
    try:
        wait_listening(moto_port), wait_listening(proxy_port)
        http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=60))
        client = Minio(f"127.0.0.1:{proxy_port}", access_key="k", secret_key="s", secure=False, http_client=http)
        client.make_bucket("bench")
        cfg = load_config(
            ROOT / "configs" / "smoke.yaml",
            [
                f"train.epochs={args.epochs}",
                f"train.checkpoint_every={args.checkpoint_every}",
                f"runtime.threads={args.threads}",
            ],
        )
        train, _ = make_synthetic(num_classes=10, n_train=cfg.data.synthetic_train, n_test=16, seed=0)
        times = {}
        with TemporaryDirectory() as tmp:
            for name in ("no store", "mirrored"):
                mirror = CheckpointSync(S3Store(client, "bench", "p"), "checkpoints/r/h/train", run_id="r")
                start = time.perf_counter()
                result = train_hybrid(
                    cfg, train, out_dir=Path(tmp) / name, callbacks=[mirror] if name == "mirrored" else []
                )
                times[name] = time.perf_counter() - start
                if name == "mirrored":
                    start = time.perf_counter()
                    mirror.flush()
                    flushed, step = time.perf_counter() - start, mirror.latest_step()
            size_mb = (Path(tmp) / "mirrored" / "last.pt").stat().st_size / 1e6
        print(
            f"steps {result.step}, a {size_mb:.1f} MB checkpoint every {args.checkpoint_every} steps, "
            f"store {args.rate / 1e6:g} MB/s"
        )
        for name, seconds in times.items():
            print(f"{name:>9}: {seconds:7.1f} s training")
        print(f"ratio mirrored / no store: {times['mirrored'] / times['no store']:.3f}")
        print(f"final flush waited {flushed:.1f} s; mirror holds step {step}")
    finally:
        for server in servers:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
