"""One rank of a launch (``launch.py``), started by torchrun as ``python -m hybridmi.task.rank DIR``."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

from hybridmi.errors import Preempted
from hybridmi.runtime import setup_logging, sigterm_handling, write_json
from hybridmi.task.launch import RankRecord
from hybridmi.task.run import run_task
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
        with sigterm_handling():  # training checkpoints after the step in flight; anything else unwinds
            result = run_task(
                task["stage"],
                task["config"],
                inputs=task["inputs"],
                outputs=task["outputs"],
                resume_from=task["resume_from"],
            )
    except Preempted as exc:  # SIGTERM during training: the checkpoint of the last step is written
        record.write("terminated", str(exc))
        log.warning("%s", exc)
        return 128 + signal.SIGTERM
    except SystemExit:  # SIGTERM outside training (or torchrun stopping this rank because another one failed)
        record.write("terminated")
        raise
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        record.write("failed", error)  # the launcher's one-line cause; the whole traceback goes to the task's log
        log.error("rank %d failed: %s", ranks.rank, error, exc_info=True)
        return 1
    if ranks.main:
        write_json(directory / "result.json", {"metrics": result.metrics, "metadata": result.metadata})
    record.write("done")
    return 0


if __name__ == "__main__":
    sys.exit(rank_main(Path(sys.argv[1])))
