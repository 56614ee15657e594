"""``hybridmi submit``: compile and submit a pipeline to a Kubeflow Pipelines cluster with kfp.Client.

The config travels as the ``config`` parameter (resolved YAML, no credentials: storage credentials
reach the pods from a Kubernetes Secret, see pipelines/settings.py). ``only`` + ``inputs`` submit the
one-stage rerun pipeline (``dsl.importer`` of existing artifact URIs).
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from hybridmi.config import load_config
from hybridmi.orchestrate.compile import compile_pipeline
from hybridmi.orchestrate.local import pipeline_function, run_arguments

log = logging.getLogger(__name__)

SUCCEEDED = "SUCCEEDED"


@dataclass(frozen=True)
class Submitted:
    run_id: str
    url: str
    state: str | None  # final state when waited for, else None


def run_url(host: str, run_id: str) -> str:
    """The KFP UI address of a run."""
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def submission_arguments(
    cfg_path: str | Path | None, overrides: Sequence[str] = (), *, parameters: Mapping[str, Any] | None = None,
    only: str | None = None, inputs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The run's arguments: resolved config text, task parameters, ``<input>_uri`` for a rerun."""
    if inputs and not only:
        raise ValueError("--from is only used with --only STAGE")
    _, arguments = run_arguments(cfg_path, overrides, parameters=parameters, only=only, inputs=inputs)
    arguments.update({f"{name}_uri": str(uri) for name, uri in (inputs or {}).items()})
    return arguments


def submit(
    host: str,
    cfg_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    pipeline: str = "hybridmi",
    experiment: str = "hybridmi",
    run_name: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    enable_caching: bool = True,
    only: str | None = None,
    inputs: Mapping[str, str] | None = None,
    wait: bool = False,
    timeout_s: float = 24 * 3600,
    namespace: str | None = None,
    pipeline_root: str | None = None,
    client: Any = None,
) -> Submitted:
    """Compile ``pipeline`` (or the rerun of stage ``only``), submit it, optionally wait for the final state.

    pipeline_root: where the backend keeps this run's artifacts (default: the cluster's, minio://mlpipeline/v2/artifacts).
    client: a ready kfp.Client (tests, custom auth); default ``kfp.Client(host=host, namespace=namespace)``.
    """
    arguments = submission_arguments(cfg_path, overrides, parameters=parameters, only=only, inputs=inputs)
    func = pipeline_function(pipeline, only)
    if client is None:
        import kfp

        client = kfp.Client(host=host, **({"namespace": namespace} if namespace else {}))
    name = run_name or (f"hybridmi-rerun-{only}" if only else f"{pipeline}-{load_config(cfg_path, list(overrides)).name}")
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(func, Path(tmp) / "pipeline.yaml")
        result = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, run_name=name, experiment_name=experiment, enable_caching=enable_caching,
            namespace=namespace, pipeline_root=pipeline_root,
        )
    run_id = result.run_id
    url = run_url(host, run_id)
    log.info("submitted run %s: %s", run_id, url)
    state = None
    if wait:
        detail = client.wait_for_run_completion(run_id, timeout=int(timeout_s))
        state = str(detail.state)
        log.info("run %s finished: %s (%s)", run_id, state, url)
    return Submitted(run_id=run_id, url=url, state=state)
