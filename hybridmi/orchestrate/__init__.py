"""Orchestration: compile the pipelines, run them on this machine, submit them to a KFP cluster.

Only the CLI imports this package (lazily); the library core never does. ``task`` (what a
component body calls) imports no kfp; the entry points below import kfp when called.

    compile_pipelines(out_dir) -> list[Path]
    run_local(cfg_path, overrides, *, runner="subprocess"|"docker"|"inprocess", pipeline_root, store_uri, ...) -> LocalRun
    submit(host, cfg_path, overrides, *, pipeline, experiment, run_name, enable_caching, only, inputs, wait, auth, ...) -> Submitted

Runners import ``pipelines`` (the definitions and their parameters); ``pipelines`` never imports this package.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {
    "compile_pipelines": "hybridmi.orchestrate.compile",
    "run_local": "hybridmi.orchestrate.local",
    "LocalRun": "hybridmi.orchestrate.local",
    "StageFailed": "hybridmi.orchestrate.inprocess",
    "submit": "hybridmi.orchestrate.remote",
    "Submitted": "hybridmi.orchestrate.remote",
    "Auth": "hybridmi.orchestrate.connection",
    "SubmitError": "hybridmi.orchestrate.connection",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
