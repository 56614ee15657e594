"""One rank of a launch (``launch.py``), started by torchrun as ``python -m hybridmi.task.rank DIR``.

The rank reads the task from ``DIR/task.json``, runs it with ``run_task`` (rank 0 with the store,
checkpoint mirror and metrics) and keeps its ``RankRecord`` up to date, so the launcher can name the
cause of a failed launch; rank 0 leaves the task's result in ``DIR/result.json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from hybridmi.runtime import setup_logging, write_json
from hybridmi.task.launch import RankRecord
from hybridmi.task.run import run_task
from hybridmi.task.scratch import exit_on_sigterm
from hybridmi.train.distributed import Ranks

log = logging.getLogger("hybridmi.task.rank")  # also when run as __main__


def rank_main(directory: Path) -> int:
    """One rank of ``launch_ranks`` (started by torchrun): run the task, record how it ended."""
    ranks = Ranks.from_env(os.environ)
    setup_logging(os.environ.get("HYBRIDMI_LOG_LEVEL", "INFO"), prefix=f"[rank {ranks.rank}] ")
    record = RankRecord(directory, ranks.rank)
    record.write("running")
    task = json.loads((directory / "task.json").read_text())
    log.info("rank %d of %d (local rank %d, pid %d)", ranks.rank, ranks.world_size, ranks.local_rank, os.getpid())
    try:
        with exit_on_sigterm():
            result = run_task(
                task["stage"],
                task["config"],
                inputs=task["inputs"],
                outputs=task["outputs"],
                resume_from=task["resume_from"],
            )
    except SystemExit:  # SIGTERM: torchrun stopping this rank because another one failed
        record.write("terminated")
        raise
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        record.write("failed", error)
        print(f"hybridmi: error: rank {ranks.rank}: {error}", file=sys.stderr)
        return 1
    if ranks.main:
        write_json(directory / "result.json", {"metrics": result.metrics, "metadata": result.metadata})
    record.write("done")
    return 0


if __name__ == "__main__":
    sys.exit(rank_main(Path(sys.argv[1])))
