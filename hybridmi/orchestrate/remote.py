"""``hybridmi submit``: compile and submit a pipeline to a Kubeflow Pipelines cluster with kfp.Client.

The config travels as the ``config`` parameter (resolved YAML, no credentials: storage credentials
reach the pods from a Kubernetes Secret, see pipelines/settings.py). ``only`` + ``inputs`` submit the
one-stage rerun pipeline (``dsl.importer`` of artifact URIs, checked here first; caching off unless
asked). Everything the cluster could refuse is checked before the first request; everything it does
refuse ends in one ``SubmitError`` line (connection.py).
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hybridmi.config import load_config
from hybridmi.orchestrate.compile import compile_pipeline, pipeline_for, train_nodes
from hybridmi.orchestrate.connection import (FINAL_STATES, Auth, SubmitError, api_problem, connect, quiet_stdout, state_of,
                                             ui_base, wait_for_final_state)
from hybridmi.orchestrate.local import run_arguments

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    run_id: str
    url: str
    state: str | None = None  # final state when waited for, else None
    error: str = ""  # the run's error message when it did not succeed
    seconds: float | None = None  # from creation to the final state, as the server reports them

    @property
    def exit_code(self) -> int:
        """0 for a run not waited for or SUCCEEDED; FINAL_STATES' code otherwise."""
        return 0 if self.state is None else FINAL_STATES[self.state]

    def summary(self) -> str:
        """One line: run id, state, duration, error, UI link."""
        if self.state is None:
            return f"run {self.run_id} submitted: {self.url}"
        took = f" after {_duration(self.seconds)}" if self.seconds is not None else ""
        return f"run {self.run_id} {self.state}{took}{f': {self.error}' if self.error else ''}: {self.url}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m{secs:02d}s" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def run_url(ui: str, run_id: str) -> str:
    """The KFP UI address of a run."""
    return f"{ui.rstrip('/')}/#/runs/details/{run_id}"


def submission_arguments(
    cfg_path: str | Path | None, overrides: Sequence[str] = (), *, parameters: Mapping[str, Any] | None = None,
    only: str | None = None, inputs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The run's arguments: resolved config text, checked task parameters, ``<input>_uri`` for a rerun (URIs checked)."""
    from pipelines.rerun import check_artifact_uri

    if inputs and not only:
        raise ValueError("--from is only used with --only STAGE")
    _, arguments = run_arguments(cfg_path, overrides, parameters=parameters, only=only, inputs=inputs)
    arguments.update({f"{name}_uri": check_artifact_uri(name, str(uri)) for name, uri in (inputs or {}).items()})
    return arguments


def _run_seconds(run: Any) -> float | None:
    created, finished = getattr(run, "created_at", None), getattr(run, "finished_at", None)
    try:
        return max((finished - created).total_seconds(), 0.0)
    except TypeError:  # a field missing (or a type the API does not promise)
        return None


def _run_error(run: Any) -> str:
    error = getattr(run, "error", None)
    message = getattr(error, "message", None) or ""
    return " ".join(str(message).split())


def submit(
    host: str,
    cfg_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    pipeline: str = "hybridmi",
    experiment: str = "hybridmi",
    run_name: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    enable_caching: bool | None = None,
    only: str | None = None,
    inputs: Mapping[str, str] | None = None,
    wait: bool = False,
    timeout_s: float = 24 * 3600,
    poll_s: float = 10.0,
    namespace: str | None = None,
    pipeline_root: str | None = None,
    auth: Auth = Auth(),
    ui_url: str | None = None,
    limits: Any = None,
    client_factory: Callable[..., Any] = connect,
) -> Submitted:
    """Compile ``pipeline`` (or the rerun of stage ``only``) with ``limits``, submit it, optionally wait for a final state.

    parameters["train_nodes"] > 1 submits the multi-node pipeline (the train step as a Kubeflow Trainer TrainJob).

    enable_caching: None keeps the compiled settings (stages cache, reruns do not); True/False overrides every task.
    pipeline_root: where the backend keeps this run's artifacts (default: the cluster's, minio://mlpipeline/v2/artifacts).
    Raises SubmitError (one line) for what the cluster refuses, ValueError for bad arguments, TimeoutError from waiting.
    """
    arguments = submission_arguments(cfg_path, overrides, parameters=parameters, only=only, inputs=inputs)
    func = pipeline_for(pipeline, only, limits, train_nodes=train_nodes(arguments))
    name = run_name or (f"hybridmi-rerun-{only}" if only else f"{pipeline}-{load_config(cfg_path, list(overrides)).name}")
    client = client_factory(host, auth, namespace=namespace, ui_url=ui_url)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(func, Path(tmp) / "pipeline.yaml")
        try:
            with quiet_stdout():
                result = client.create_run_from_pipeline_package(
                    str(package), arguments=arguments, run_name=name, experiment_name=experiment,
                    enable_caching=enable_caching, namespace=namespace, pipeline_root=pipeline_root)
        except Exception as exc:
            raise api_problem(host, f"submitting {func.name}", exc) from None
    run_id = result.run_id
    url = run_url(ui_base(host, ui_url), run_id)
    log.info("submitted run %s: %s", run_id, url)
    if not wait:
        return Submitted(run_id=run_id, url=url)
    try:
        run = wait_for_final_state(lambda: client.get_run(run_id), timeout_s=timeout_s, poll_s=poll_s)
    except TimeoutError as exc:
        raise TimeoutError(f"run {run_id}: {exc}; it goes on: {url}") from None
    except Exception as exc:
        raise api_problem(host, f"waiting for run {run_id}", exc) from None
    state = state_of(run)
    return Submitted(run_id=run_id, url=url, state=state, error="" if state == "SUCCEEDED" else _run_error(run),
                     seconds=_run_seconds(run))


__all__ = ["Auth", "SubmitError", "Submitted", "submit", "submission_arguments", "run_url"]
