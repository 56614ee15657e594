"""Training-step throughput on 1 and N DDP ranks, in one run, with the scaling efficiency.

Each row is a fresh process group (torchrun for N > 1; gloo on the CPU, NCCL with one GPU per rank) running
the trainer's own step on its rows of the same global batch (strong scaling). Efficiency = speed-up / the
cores used relative to the 1-rank row; ``--same-cores`` adds one process with the largest row's cores as threads.

    .venv/bin/python bench/ddp_throughput.py --preset cpu --ranks 1 2 --threads 1 --steps 20
    .venv/bin/python bench/ddp_throughput.py --preset cifar10 --device cuda --ranks 1 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def measure(
    ranks: int, *, preset: str, overrides: list[str], steps: int, warmup: int, device: str, threads: int
) -> dict[str, Any]:
    """Run ``ranks`` ranks of the timing worker; rank 0's numbers (images/s of the global batch, s/step)."""
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        out = Path(tmp) / "result.json"
        worker = [str(Path(__file__).resolve()), "--worker", str(out), "--preset", preset, "--device", device]
        worker += ["--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads)]
        worker += [arg for o in overrides for arg in ("--set", o)]
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else []
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads or 1)}
        subprocess.run([sys.executable, *launcher, *worker], env=env, check=True, cwd=ROOT)
        return json.loads(out.read_text())


def _worker(args: argparse.Namespace) -> None:
    import torch
    from flops import build_step, preset  # bench/ is this script's sys.path[0]

    from hybridmi.data.augment import to_float
    from hybridmi.data.synthetic import make_synthetic
    from hybridmi.runtime import choose_device, seed_everything
    from hybridmi.train.distributed import Ranks, process_group, rank_device

    ranks = Ranks.from_env(os.environ)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = preset(args.preset, [f"runtime.device={args.device}", "runtime.compile=false", *args.overrides])
    device = rank_device(choose_device(args.device), ranks)
    batch_size = cfg.train.batch_size
    with process_group(ranks, device) as group:
        seed_everything(cfg.train.seed)
        step = build_step(cfg, device, group=group)
        rows = group.shard(batch_size) if group is not None else slice(None)
        train, _ = make_synthetic(num_classes=10, n_train=batch_size * (args.steps + args.warmup), n_test=10, seed=0)
        images, generator = train.images.to(device), torch.Generator(device=device)
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                step.guard.read()  # waits for the device (and, distributed, for every rank)
                start = time.perf_counter()
            batch = to_float(images[i * batch_size : (i + 1) * batch_size][rows])
            step(batch, generator=generator.manual_seed(i), lr=cfg.optim.lr)
        step.guard.read()
        elapsed = time.perf_counter() - start
    if ranks.main:
        result = {"ranks": ranks.world_size, "threads_per_rank": torch.get_num_threads(), "device": str(device)}
        result |= {"batch_size": batch_size, "steps": args.steps, "step_time_s": elapsed / args.steps}
        result["images_per_s"] = args.steps * batch_size / elapsed
        Path(args.worker).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="configs/<preset>.yaml (or a YAML path)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts, one row each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (0: torch's default)")
    parser.add_argument("--same-cores", action="store_true", help="also 1 process with threads x max(ranks)")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=v")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)
    kwargs = dict(preset=args.preset, overrides=args.overrides, steps=args.steps, warmup=args.warmup)
    rows = [measure(n, device=args.device, threads=args.threads, **kwargs) for n in args.ranks]
    if args.same_cores:
        rows.append(measure(1, device=args.device, threads=args.threads * max(args.ranks), **kwargs))
    base = rows[0]
    print(f"preset {args.preset}, global batch {base['batch_size']}, {args.steps} timed steps, {os.cpu_count()} CPUs")
    print("| ranks | threads/rank | s/step | images/s | speed-up | scaling efficiency |\n|---|---|---|---|---|---|")
    for r in rows:
        speedup = r["images_per_s"] / base["images_per_s"]
        cores = r["ranks"] * r["threads_per_rank"] / (base["ranks"] * base["threads_per_rank"])
        print(
            f"| {r['ranks']} | {r['threads_per_rank']} | {r['step_time_s']:.3f} | {r['images_per_s']:.0f} | "
            f"{speedup:.2f}x | {100 * speedup / cores:.0f} % |"
        )


if __name__ == "__main__":
    main()
