"""Wall time of the same pipeline in-process vs kfp.local SubprocessRunner vs DockerRunner.

The difference to the in-process run, divided by the number of tasks, is the orchestration overhead
per stage (process start, imports, executor, artifact bookkeeping; plus container start for Docker).

    .venv/bin/python bench/pipeline_overhead.py --config configs/smoke.yaml [--set a.b=v ...] \
        [--runners inprocess subprocess docker] [--repeat 1] [--fid-weights FILE] [--json out.json]

Without --fid-weights, randomly initialised Inception weights are written to the run directory
(FID values are then meaningless; the timing is what is measured). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hybridmi.runners.local import run_local
from hybridmi.stages import STAGE_NAMES

TASKS_PER_RUN = len(STAGE_NAMES) + 1  # every stage plus the configure task


def random_fid_weights(directory: Path) -> Path:
    import torch

    from hybridmi.eval.fid import FIDInceptionV3

    torch.manual_seed(0)
    path = directory / "fid-weights-random.pth"
    torch.save(FIDInceptionV3().net.state_dict(), path)
    return path


def measure(runner: str, *, config: str, overrides: list[str], root: Path, repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` full runs with ``runner``."""
    times = []
    for _ in range(repeat):
        start = time.monotonic()
        run_local(config, overrides, runner=runner, pipeline_root=root)  # one root: mounted in Docker tasks
        times.append(time.monotonic() - start)
    return times


def table(results: dict[str, list[float]]) -> str:
    base = statistics.median(results["inprocess"]) if "inprocess" in results else None
    lines = ["| runner | wall s (median) | runs | overhead vs in-process, s | per task, s |", "|---|---|---|---|---|"]
    for runner, times in results.items():
        median = statistics.median(times)
        extra = "—" if base is None or runner == "inprocess" else f"{median - base:.1f}"
        per_task = "—" if base is None or runner == "inprocess" else f"{(median - base) / TASKS_PER_RUN:.1f}"
        lines.append(f"| {runner} | {median:.1f} | {len(times)} | {extra} | {per_task} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/smoke.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE")
    parser.add_argument(
        "--runners",
        nargs="+",
        default=["inprocess", "subprocess", "docker"],
        choices=["inprocess", "subprocess", "docker"],
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--fid-weights", type=Path, help="FID Inception weights (default: random, timing only)")
    parser.add_argument("--root", type=Path, help="pipeline root (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hybridmi-bench-") as tmp:
        root = (args.root or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        weights = args.fid_weights or random_fid_weights(root)  # under the root: mounted into Docker tasks
        overrides = [*args.overrides, f"fid.weights={Path(weights).resolve()}"]
        results = {
            r: measure(r, config=args.config, overrides=overrides, root=root, repeat=args.repeat) for r in args.runners
        }
    report = {
        "results_s": results,
        "config": args.config,
        "overrides": args.overrides,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "load_avg_1m": os.getloadavg()[0],
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"config {args.config} {' '.join(args.overrides)}; {os.cpu_count()} CPUs; load {report['load_avg_1m']:.1f}")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
