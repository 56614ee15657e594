"""``hybridmi submit``: compile and submit a pipeline to a Kubeflow Pipelines cluster with kfp.Client."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from hybridmi.errors import UsageError
from hybridmi.runners.arguments import checkout_image, run_arguments, train_nodes
from hybridmi.runners.compile import compile_pipeline, pipeline_for
from hybridmi.runners.connection import (
    FINAL_STATES,
    Auth,
    Backoff,
    SubmitError,
    WaitTimedOut,
    api_problem,
    connect,
    quiet_stdout,
    state_of,
    wait_for_final_state,
)
from pipelines.driver_contract import check_package_text
from pipelines.rerun import check_artifact_uri

log = logging.getLogger(__name__)

UI_URL_VAR = "KF_PIPELINES_UI_ENDPOINT"  # kfp.Client's own override of the UI address
# Added to the pipeline's run-time bound for the default wait: pod scheduling, image pulls before a pod
# starts and KFP's driver pods take time that no pod timeout bounds.
WAIT_MARGIN_S = 3600
_NO_BOUND = "no time bound; give the wait's timeout"


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


def run_time_bound_s(package: str, arguments: Mapping[str, Any] | None = None) -> float:
    """The longest a run of a compiled package can take (seconds): the longest chain of task bounds through each DAG.

    ValueError when an executor has no timeout or a loop's items are unknown before the run."""
    spec, platform = (*yaml.safe_load_all(package), {})[:2]  # the platform spec: {} when there is none
    deadlines = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    executor_s = {}
    for label, executor in spec["deploymentSpec"]["executors"].items():
        if "importer" not in executor and "activeDeadlineSeconds" not in deadlines.get(label, {}):
            raise UsageError(
                f"executor {label} has no timeout (activeDeadlineSeconds): a run of {spec['pipelineInfo']['name']} "
                f"has {_NO_BOUND}"
            )
        executor_s[label] = 0.0 if "importer" in executor else float(deadlines[label]["activeDeadlineSeconds"])

    def dag_s(dag: Mapping, scope: Mapping) -> float:
        """The longest chain of task bounds through ``dag``; ``scope``: the known values of its inputs."""
        tasks = dag.get("tasks", {})

        @functools.cache
        def finish_s(name: str) -> float:
            start_s = max(map(finish_s, tasks[name].get("dependentTasks", ())), default=0.0)
            return start_s + task_s(name, tasks[name], scope)

        return max(map(finish_s, tasks), default=0.0)

    def task_s(name: str, task: Mapping, scope: Mapping) -> float:
        """(1 + retries) x its executor's timeout or nested DAG's bound, plus backoff pauses; x a loop's waves."""
        inputs = {  # the values of its parameters known before the run (constants, pipeline inputs), else None
            k: b["runtimeValue"].get("constant") if "runtimeValue" in b else scope.get(b.get("componentInputParameter"))
            for k, b in task.get("inputs", {}).get("parameters", {}).items()
        }
        component = spec["components"][task["componentRef"]["name"]]
        once_s = dag_s(component["dag"], inputs) if "dag" in component else executor_s[component["executorLabel"]]
        policy = task.get("retryPolicy", {})  # protobuf Durations in their JSON form: "30s"
        retries, factor = int(policy.get("maxRetryCount", 0)), float(policy.get("backoffFactor", 2.0))
        first_s = float(str(policy.get("backoffDuration", "0s")).removesuffix("s"))
        most_s = float(str(policy.get("backoffMaxDuration", "inf")).removesuffix("s"))
        tries_s = (1 + retries) * once_s + sum(min(first_s * factor**i, most_s) for i in range(retries))
        iterator = task.get("parameterIterator") or task.get("artifactIterator")
        if iterator is None:
            return tries_s
        items = iterator.get("items", {})
        values = json.loads(items["raw"]) if "raw" in items else inputs.get(items.get("inputParameter"))
        if isinstance(values, str):
            values = json.loads(values)  # a list argument given as its JSON text
        if not isinstance(values, list):
            raise UsageError(f"the items of loop {name} are not known before the run: {_NO_BOUND}")
        limit = int(task.get("iteratorPolicy", {}).get("parallelismLimit", 0)) or max(len(values), 1)
        return math.ceil(len(values) / limit) * tries_s

    defaults = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    scope = {name: p["defaultValue"] for name, p in defaults.items() if "defaultValue" in p} | dict(arguments or {})
    return dag_s(spec["root"]["dag"], scope)


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
    timeout_s: float | None = None,
    poll_s: float = 10.0,
    backoff: Backoff = Backoff(),
    namespace: str | None = None,
    pipeline_root: str | None = None,
    auth: Auth = Auth(),
    ui_url: str | None = None,
    limits: Any = None,
    client_factory: Callable[..., Any] = connect,
) -> Submitted:
    """Compile ``pipeline`` (or the rerun of stage ``only``) with ``limits``, submit it, optionally wait for a final state.

    Without ``image``, the run gets the tag docker/build.sh gives this checkout; parameters["train_nodes"] > 1 submits
    the multi-node pipeline; enable_caching None keeps the compiled settings; timeout_s None waits ``run_time_bound_s``
    plus WAIT_MARGIN_S. SubmitError (one line) for what the cluster refuses, ValueError for bad arguments or a run the
    KFP driver would refuse, TimeoutError from waiting.
    """
    if inputs and not only:
        raise UsageError("--from is only used with --only STAGE")
    cfg, arguments = run_arguments(cfg_path, overrides, parameters=parameters, only=only, inputs=inputs)
    if "image" not in arguments:
        arguments["image"] = checkout_image(needed_for="hybridmi submit")
        log.info(
            "image %s: the tag docker/build.sh gives this checkout (a cluster that pulls needs --image "
            "REGISTRY/NAME:TAG)",
            arguments["image"],
        )
    for name, uri in (inputs or {}).items():
        arguments[f"{name}_uri"] = check_artifact_uri(name, str(uri), pipeline_root)
    func = pipeline_for(pipeline, only, limits, train_nodes=train_nodes(arguments))
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(func, Path(tmp) / "pipeline.yaml")
        if refusals := check_package_text(package.read_text(), arguments):
            more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
            raise UsageError(f"the KFP driver would refuse this run: {refusals[0]}{more}")
        client = client_factory(host, auth, namespace=namespace, ui_url=ui_url)
        if wait and timeout_s is None:
            timeout_s = run_time_bound_s(package.read_text(), arguments) + WAIT_MARGIN_S
            log.info(
                "waiting up to %s: the pipeline's longest chain of task timeouts with retries, plus %s",
                _duration(timeout_s),
                _duration(WAIT_MARGIN_S),
            )
        try:
            with quiet_stdout():
                run_id = client.create_run_from_pipeline_package(
                    str(package),
                    arguments=arguments,
                    run_name=run_name or (f"hybridmi-rerun-{only}" if only else f"{pipeline}-{cfg.name}"),
                    experiment_name=experiment,
                    enable_caching=enable_caching,
                    namespace=namespace,
                    pipeline_root=pipeline_root,
                ).run_id
        except Exception as exc:
            raise api_problem(host, f"submitting {func.name}", exc) from None
    ui = ui_url or os.environ.get(UI_URL_VAR) or host  # the KFP UI serves the API as well
    url = f"{ui.rstrip('/')}/#/runs/details/{run_id}"
    log.info("submitted run %s: %s", run_id, url)
    if not wait:
        return Submitted(run_id=run_id, url=url)
    try:
        run = wait_for_final_state(lambda: client.get_run(run_id), timeout_s=timeout_s, poll_s=poll_s, backoff=backoff)
    except WaitTimedOut as exc:
        going_on = "it goes on" if exc.answering else "it may still be going on"
        raise TimeoutError(f"run {run_id}: {exc}; {going_on}: {url}") from None
    except Exception as exc:
        raise api_problem(host, f"waiting for run {run_id}", exc) from None
    try:  # from creation to the final state; None when a field is missing (or a type the API does not promise)
        seconds = max((run.finished_at - run.created_at).total_seconds(), 0.0)
    except (AttributeError, TypeError):
        seconds = None
    state, error = state_of(run), getattr(getattr(run, "error", None), "message", None) or ""
    return Submitted(run_id, url, state, "" if state == "SUCCEEDED" else " ".join(str(error).split()), seconds)


__all__ = ["Auth", "SubmitError", "Submitted", "submit", "run_time_bound_s"]
