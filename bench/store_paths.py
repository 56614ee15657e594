"""What object storage costs and saves a task: the data set fetched instead of decoded, the access probe,
and one checkpoint mirrored (newest-wins pointer included), against a loopback moto S3 server.

    .venv/bin/python bench/store_paths.py --config configs/cpu.yaml [--set a.b=v ...] [--json out.json]

"prepare, decoded" runs stage prepare with an empty decode cache (a fresh machine) and publishes the
data set; "prepare, fetched" runs it again with another empty decode cache, as a later run on another
machine would: the source fingerprint finds the published copy and the decode is skipped. moto is
in-process Python, far slower per byte than MinIO or S3, so the fetch row is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import torch

from hybridmi.config import load_config
from hybridmi.store import CheckpointSync, store_from_env
from hybridmi.task.run import STORE_VAR, run_task
from hybridmi.train.checkpoint import save_checkpoint
from hybridmi.train.hybrid import build_models, make_optimizer


def moto_env() -> dict[str, str]:
    from minio import Minio
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    Minio(f"127.0.0.1:{port}", access_key="bench", secret_key="bench-secret", secure=False).make_bucket("bench")
    return {
        **os.environ,
        "HYBRIDMI_S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        STORE_VAR: "s3://bench/store",
        "HYBRIDMI_RUN_ID": "bench",
    }


def timed(fn):
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - start_wall, time.process_time() - start_cpu


def checkpoint_of(cfg, directory: Path) -> Path:
    """A real trainer checkpoint of the configured model (weights, AdamW state after one step)."""
    autoencoder, moco = build_models(cfg)
    params = list(autoencoder.parameters()) + (list(moco.head_q.parameters()) if moco is not None else [])
    optimizer = make_optimizer(params, cfg)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    return save_checkpoint(
        directory,
        kind="hybrid",
        step=1,
        config={},
        autoencoder=autoencoder.state_dict(),
        moco=moco.state_dict() if moco is not None else None,
        optimizer=optimizer.state_dict(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/cpu.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    env = moto_env()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        tmp = Path(tmp)
        for label, n in (
            ("prepare, decoded (empty decode cache) and published", 1),
            ("prepare, fetched from the store (another empty decode cache)", 2),
        ):
            cfg = load_config(args.config, [*args.overrides, f"data.cache_dir={tmp / f'cache{n}'}"])
            result, wall, cpu = timed(
                lambda: run_task("prepare", cfg, inputs={}, outputs={"dataset": tmp / f"ds{n}"}, env=env)
            )
            size = sum(f.stat().st_size for f in (tmp / f"ds{n}").rglob("*.pt"))
            rows.append(
                {
                    "what": f"{label}: {size / 2**20:.0f} MiB of tensors",
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "decode_skipped": result.metadata["decode_skipped"],
                }
            )
        store = store_from_env(env[STORE_VAR], env)
        _, wall, cpu = timed(lambda: store_from_env(env[STORE_VAR], env).check_access(write=True))
        rows.append(
            {"what": "access probe (read, write + delete, conditional-write detection)", "wall_s": wall, "cpu_s": cpu}
        )
        path = checkpoint_of(cfg, tmp / "ckpt")
        sync = CheckpointSync(store, "checkpoints/bench/train", run_id="bench")
        _, wall, cpu = timed(lambda: sync.upload(path, 1))
        rows.append(
            {"what": f"one checkpoint mirrored ({path.stat().st_size / 2**20:.1f} MiB)", "wall_s": wall, "cpu_s": cpu}
        )
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, torch {torch.__version__}"
    print(f"{args.config} on {machine}\n\n| what | wall s | CPU s |\n|---|---|---|")
    for row in rows:
        print(f"| {row['what']} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"config": str(args.config), "machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
