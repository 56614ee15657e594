"""``hybridmi submit``: compile and submit a pipeline to a Kubeflow Pipelines cluster with kfp.Client."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from hybridmi.config import load_config
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
    quiet_retries,
    quiet_stdout,
    state_of,
    ui_base,
    wait_for_final_state,
)
from pipelines.driver_contract import check_package_text
from pipelines.rerun import check_artifact_uri

log = logging.getLogger(__name__)

# Added to the pipeline's run-time bound for the default wait: pod scheduling, image pulls before a pod
# starts and KFP's driver pods take time that no pod timeout bounds.
WAIT_MARGIN_S = 3600


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
    cfg_path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    parameters: Mapping[str, Any] | None = None,
    only: str | None = None,
    inputs: Mapping[str, str] | None = None,
    pipeline_root: str | None = None,
) -> dict[str, Any]:
    """The run's arguments: resolved config text, checked task parameters, ``<input>_uri`` for a rerun (checked
    against the bucket of ``pipeline_root``); without ``image``, the tag docker/build.sh gives this checkout."""
    if inputs and not only:
        raise UsageError("--from is only used with --only STAGE")
    _, arguments = run_arguments(cfg_path, overrides, parameters=parameters, only=only, inputs=inputs)
    if "image" not in arguments:
        arguments["image"] = checkout_image(needed_for="hybridmi submit")
        log.info(
            "image %s: the tag docker/build.sh gives this checkout (a cluster that pulls needs --image "
            "REGISTRY/NAME:TAG)",
            arguments["image"],
        )
    arguments.update(
        {f"{name}_uri": check_artifact_uri(name, str(uri), pipeline_root) for name, uri in (inputs or {}).items()}
    )
    return arguments


def check_driver_contract(package: str, arguments: Mapping[str, Any]) -> None:
    """ValueError (one line: the first refusal and how many there are) when the KFP driver would refuse a field of
    the compiled ``package`` for a run with ``arguments`` (pipelines/driver_contract.py)."""
    refusals = check_package_text(package, arguments)
    if refusals:
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        raise UsageError(f"the KFP driver would refuse this run: {refusals[0]}{more}")


def run_time_bound_s(package: str, arguments: Mapping[str, Any] | None = None) -> float:
    """The longest a run of a compiled package can take (seconds): the longest chain of task bounds through each DAG.

    A task's bound: its pod timeout for each of its 1 + retries tries plus the backoff pauses between them, a
    nested pipeline's bound, or for a loop ceil(items / parallelismLimit) times its body's. ValueError when an
    executor has no timeout or a loop's items are unknown before the run.
    """
    spec, *rest = yaml.safe_load_all(package)
    platform = rest[0] if rest else {}
    deadlines = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    executor_s = {}
    for label, executor in spec["deploymentSpec"]["executors"].items():
        if "importer" in executor:
            executor_s[label] = 0.0
        elif "activeDeadlineSeconds" in deadlines.get(label, {}):
            executor_s[label] = float(deadlines[label]["activeDeadlineSeconds"])
        else:
            raise UsageError(
                f"executor {label} has no timeout (activeDeadlineSeconds): a run of "
                f"{spec['pipelineInfo']['name']} has no time bound; give the wait's timeout"
            )
    defaults = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    scope = {name: p["defaultValue"] for name, p in defaults.items() if "defaultValue" in p} | dict(arguments or {})
    return _dag_s(spec["root"]["dag"], scope, spec["components"], executor_s)


def _dag_s(dag: Mapping, scope: Mapping, components: Mapping, executor_s: Mapping) -> float:
    """The longest chain of task bounds through ``dag``; ``scope``: the known values of its inputs."""
    tasks, end = dag.get("tasks", {}), {}

    def finish_s(name: str) -> float:
        if name not in end:
            task = tasks[name]
            start = max((finish_s(before) for before in task.get("dependentTasks", ())), default=0.0)
            end[name] = start + _task_s(name, task, scope, components, executor_s)
        return end[name]

    return max((finish_s(name) for name in tasks), default=0.0)


def _task_s(name: str, task: Mapping, scope: Mapping, components: Mapping, executor_s: Mapping) -> float:
    """One task's bound: its executor's timeout or its nested pipeline's bound, retried, times a loop's waves."""
    bindings = task.get("inputs", {}).get("parameters", {})
    inputs = {key: value for key, binding in bindings.items() if (value := _known(binding, scope)) is not _UNKNOWN}
    component = components[task["componentRef"]["name"]]
    if "dag" in component:
        once_s = _dag_s(component["dag"], inputs, components, executor_s)
    else:
        once_s = executor_s[component["executorLabel"]]
    return _waves(name, task, inputs) * _retried_s(once_s, task.get("retryPolicy", {}))


def _retried_s(once_s: float, policy: Mapping) -> float:
    """1 + ``maxRetryCount`` tries of ``once_s`` each, and the backoff pauses between them."""
    retries = int(policy.get("maxRetryCount", 0))
    first_s, factor = _duration_s(policy.get("backoffDuration", "0s")), float(policy.get("backoffFactor", 2.0))
    most_s = _duration_s(policy["backoffMaxDuration"]) if "backoffMaxDuration" in policy else math.inf
    return (1 + retries) * once_s + sum(min(first_s * factor**i, most_s) for i in range(retries))


_UNKNOWN = object()


def _known(binding: Mapping, scope: Mapping) -> Any:
    """The value of a task's input parameter when it is known before the run (a pipeline input or a constant)."""
    if "componentInputParameter" in binding:
        return scope.get(binding["componentInputParameter"], _UNKNOWN)
    return binding.get("runtimeValue", {}).get("constant", _UNKNOWN)


def _waves(name: str, task: Mapping, inputs: Mapping) -> int:
    """How many times in a row a loop task runs its body: ceil(items / parallelismLimit); 1 for a task that is no loop."""
    iterator = task.get("parameterIterator") or task.get("artifactIterator")
    if iterator is None:
        return 1
    items = iterator.get("items", {})
    values = json.loads(items["raw"]) if "raw" in items else inputs.get(items.get("inputParameter"), _UNKNOWN)
    if isinstance(values, str):
        values = json.loads(values)  # a list argument given as its JSON text
    if not isinstance(values, list):
        raise UsageError(
            f"the items of loop {name} are not known before the run: no time bound; give the wait's timeout"
        )
    limit = int(task.get("iteratorPolicy", {}).get("parallelismLimit", 0)) or max(len(values), 1)
    return math.ceil(len(values) / limit)


def _duration_s(text: str) -> float:
    """Seconds of a protobuf Duration in its JSON form ("30s", "1.5s")."""
    return float(str(text).removesuffix("s"))


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

    parameters["train_nodes"] > 1 submits the multi-node pipeline. enable_caching: None keeps the compiled settings.
    timeout_s: None waits ``run_time_bound_s`` plus WAIT_MARGIN_S. Raises SubmitError (one line) for what the
    cluster refuses, ValueError for bad arguments, TimeoutError from waiting.
    """
    arguments = submission_arguments(
        cfg_path, overrides, parameters=parameters, only=only, inputs=inputs, pipeline_root=pipeline_root
    )
    func = pipeline_for(pipeline, only, limits, train_nodes=train_nodes(arguments))
    name = run_name or (
        f"hybridmi-rerun-{only}" if only else f"{pipeline}-{load_config(cfg_path, list(overrides)).name}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(func, Path(tmp) / "pipeline.yaml")
        check_driver_contract(package.read_text(), arguments)
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
                result = client.create_run_from_pipeline_package(
                    str(package),
                    arguments=arguments,
                    run_name=name,
                    experiment_name=experiment,
                    enable_caching=enable_caching,
                    namespace=namespace,
                    pipeline_root=pipeline_root,
                )
        except Exception as exc:
            raise api_problem(host, f"submitting {func.name}", exc) from None
    run_id = result.run_id
    url = run_url(ui_base(host, ui_url), run_id)
    log.info("submitted run %s: %s", run_id, url)
    if not wait:
        return Submitted(run_id=run_id, url=url)
    try:
        with quiet_retries():
            run = wait_for_final_state(
                lambda: client.get_run(run_id), timeout_s=timeout_s, poll_s=poll_s, backoff=backoff
            )
    except WaitTimedOut as exc:
        going_on = "it goes on" if exc.answering else "it may still be going on"
        raise TimeoutError(f"run {run_id}: {exc}; {going_on}: {url}") from None
    except Exception as exc:
        raise api_problem(host, f"waiting for run {run_id}", exc) from None
    state = state_of(run)
    return Submitted(
        run_id=run_id,
        url=url,
        state=state,
        error="" if state == "SUCCEEDED" else _run_error(run),
        seconds=_run_seconds(run),
    )


__all__ = ["Auth", "SubmitError", "Submitted", "submit", "submission_arguments", "run_url", "run_time_bound_s"]
