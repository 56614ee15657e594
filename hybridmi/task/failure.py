"""A failing task's one-line record: ``<HYBRIDMI_ERROR_DIR>/<stage>.json``, which the local runner reads back."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator, Mapping

from hybridmi.runtime import write_json

ERROR_DIR_VAR = "HYBRIDMI_ERROR_DIR"  # where a failing task leaves <stage>.json for the local runner


@contextlib.contextmanager
def recording_failure(stage: str, env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Record any exception of the block under HYBRIDMI_ERROR_DIR (for the local runner's message), re-raise it."""
    try:
        yield
    except BaseException as exc:
        directory = (os.environ if env is None else env).get(ERROR_DIR_VAR, "").strip()
        if directory:
            message = f"{type(exc).__name__}: {exc}".strip()
            if isinstance(exc, SystemExit) and exc.code == 143:  # runtime.sigterm_handling outside training
                message = "stopped by SIGTERM before it finished"
            write_json(Path(directory) / f"{stage}.json", {"stage": stage, "error": message, "time_unix": time.time()})
        raise
