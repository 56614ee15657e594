"""``hybridmi run``: the whole pipeline (or one stage) on this machine: kfp.local's subprocess or docker runner,
or the stages in this process. Every task is tried once: the cluster's GPU retries would rerun a deterministic
failure after minutes of backoff.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from hybridmi.cluster import RESUME_FROM_VAR, RUN_ID_VAR
from hybridmi.errors import MissingInput, UsageError
from hybridmi.runners.arguments import checkout_image, run_arguments, train_nodes
from hybridmi.runners.compile import local_pipeline, pipeline_for
from hybridmi.runners.inprocess import StageFailed, run_pipeline_inprocess, run_stage_inprocess
from hybridmi.task.failure import ERROR_DIR_VAR
from hybridmi.task.identity import new_run_id
from hybridmi.task.run import STORE_VAR

RUNNERS = ("subprocess", "docker", "inprocess")
# Environment a container needs from this process: storage address/credentials/TLS and logging.
FORWARDED_ENV_PREFIXES = ("HYBRIDMI_", "AWS_", "MINIO_", "SSL_CERT_FILE")
DOCKER_SHM = "2g"


@dataclass(frozen=True)
class LocalRun:
    runner: str
    run_dir: Path
    outputs: dict[str, dict[str, Path]]  # task name -> output name -> local path
    wall_s: float
    metadata: dict[str, dict[str, dict]] = field(default_factory=dict)  # task -> output -> KFP artifact metadata
    run_id: str = ""  # what the tasks key checkpoints and metrics by (HYBRIDMI_RUN_ID)
    started_unix: float = 0.0  # wall-clock start (time.time()), for per-task timings

    def artifact(self, task: str, output: str) -> Path:
        """The local path of ``task``'s output ``output``; KeyError naming what exists."""
        try:
            return self.outputs[task][output]
        except KeyError:
            raise KeyError(
                f"run {self.run_dir} has no output {task}/{output}; tasks: {', '.join(sorted(self.outputs))}"
            ) from None


def scan_outputs(run_dir: Path) -> tuple[dict[str, dict[str, Path]], dict[str, dict[str, dict]]]:
    """(task -> output -> path, task -> output -> metadata) of a kfp.local run directory's top-level tasks."""
    outputs: dict[str, dict[str, Path]] = {}
    metadata: dict[str, dict[str, dict]] = {}
    for task in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        doc = task / "executor_output.json"
        if not doc.is_file():
            continue
        artifacts = json.loads(doc.read_text()).get("artifacts", {})
        outputs[task.name] = {name: Path(entry["artifacts"][0]["uri"]) for name, entry in artifacts.items()}
        metadata[task.name] = {name: entry["artifacts"][0].get("metadata", {}) for name, entry in artifacts.items()}
    return outputs, metadata


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for child processes for the duration of the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def container_env(values: Mapping[str, str], base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The storage/logging variables of ``base`` plus ``values``: what a task container gets."""
    env = {k: v for k, v in base.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
    return {**env, **values}


def docker_runner(env: Mapping[str, str], *, gpu: bool | None = None):
    """DockerRunner on the host network (a loopback S3 endpoint is reachable), big /dev/shm, GPUs when present."""
    from kfp import local

    import docker

    if gpu is None:
        gpu = shutil.which("nvidia-smi") is not None
    # Run as this user, so the outputs under the (bind-mounted) pipeline root belong to whoever started the run.
    kwargs = {
        "network_mode": "host",
        "shm_size": DOCKER_SHM,
        "environment": dict(env),
        "user": f"{os.getuid()}:{os.getgid()}",
    }
    if gpu:
        kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return local.DockerRunner(**kwargs)


def _failure(error_dir: Path, run_dir: Path, kfp_message: str) -> StageFailed:
    """The first task failure recorded by run_task; else the innermost task kfp names, with a pointer to its log."""
    records = sorted(error_dir.glob("*.json"), key=lambda p: p.stat().st_mtime) if error_dir.is_dir() else []
    if records:
        first = json.loads(records[0].read_text())
        return StageFailed(first["stage"], " ".join(first["error"].split()), run_dir=run_dir)  # one line
    plain = re.sub(r"\x1b\[[0-9;]*m", "", kfp_message)
    named = re.search(r"Inner task failed: '([^']+)'", plain)
    return StageFailed(
        named.group(1) if named else "?",
        f"the task failed before its stage ran; see its log above ({plain})",
        run_dir=run_dir,
    )


def _kfp_run(
    pipeline_func, arguments: dict[str, str], *, runner, pipeline_root: Path, error_dir: Path, enable_caching: bool
) -> Path:
    from kfp import local

    local.init(runner=runner, pipeline_root=str(pipeline_root), raise_on_error=True, enable_caching=enable_caching)
    before = _run_dirs(pipeline_root)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")  # the project image has Python
        # Cluster-only settings (GPU, CPU/memory requests) are ignored locally; kfp warns once per task.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        try:
            pipeline_func(**arguments)
        except RuntimeError as exc:
            new = sorted(_run_dirs(pipeline_root) - before)
            raise _failure(error_dir, pipeline_root / new[-1] if new else pipeline_root, str(exc)) from exc
    new = sorted(_run_dirs(pipeline_root) - before)
    if len(new) != 1:
        raise RuntimeError(f"expected one new run directory in {pipeline_root}, found {new}")
    return pipeline_root / new[0]


def _run_dirs(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}


def preflight(cfg, arguments: Mapping[str, Any], *, store_uri: str | None, fid: bool) -> None:
    """What would otherwise fail hours into a run, checked before its first task (one line each)."""
    if arguments.get("resume_from") and not store_uri:
        raise UsageError("--resume-from needs the store holding that run's checkpoints (--store URI, not none)")
    if store_uri:
        from hybridmi.store import store_from_env

        store_from_env(store_uri, os.environ).check_access(write=True)
    if fid:
        check_fid_weights(cfg.fid.weights)


def check_fid_weights(weights: str | None) -> None:
    """The FID weights file exists and its bytes are the ones its conversion record names."""
    from hybridmi.eval.fid import MAKE_WEIGHTS, default_weights_path, read_record, record_path
    from hybridmi.runtime import sha256_file

    path = Path(weights).expanduser() if weights else default_weights_path()
    if not path.is_file():
        raise MissingInput(f"FID Inception weights not found: {path} (make them with `{MAKE_WEIGHTS}`)")
    record = read_record(path)
    if record is not None and record.get("sha256") != sha256_file(path):
        raise UsageError(f"FID Inception weights {path} do not match {record_path(path)}: rerun `{MAKE_WEIGHTS}`")


def run_local(
    cfg_path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    runner: str = "subprocess",
    pipeline_root: str | Path = "hybridmi-runs",
    store_uri: str | None = None,
    parameters: Mapping[str, str] | None = None,
    pipeline: str = "hybridmi",
    only: str | None = None,
    inputs: Mapping[str, str | Path] | None = None,
    enable_caching: bool = False,
    gpu: bool | None = None,
) -> LocalRun:
    """Run the hybridmi pipeline (or, with ``only``, one stage on ``inputs``) on this machine.

    cfg_path/overrides: the preset and ``a.b=value`` overrides (validated first: ConfigError).
    pipeline: "hybridmi" or "alpha_sweep" (kfp runners only); parameters: pipeline parameters
    (hybrid_epochs, gpu_count, alphas for the sweep, ...; see pipelines/parameters.py).
    store_uri: object storage for the tasks (HYBRIDMI_STORE); credentials come from this process's env.
    Every run gets its own run id (``LocalRun.run_id``; checkpoints in the store are keyed by it);
    parameters["resume_from"] continues the trainers of an earlier run.
    Raises StageFailed carrying the failing stage's own error message and the run directory.
    """
    if runner not in RUNNERS:
        raise UsageError(f"runner {runner!r} is not one of {', '.join(RUNNERS)}")
    if inputs and not only:
        raise UsageError("inputs are given only with `only` (a one-stage rerun)")
    if runner == "inprocess" and pipeline != "hybridmi":
        raise UsageError(f"the in-process runner runs the hybridmi pipeline only, not {pipeline!r}")
    cfg, arguments = run_arguments(cfg_path, overrides, parameters=parameters, only=only, inputs=inputs)
    preflight(
        cfg,
        arguments,
        store_uri=store_uri if runner != "docker" else None,
        fid=pipeline == "hybridmi" and only in (None, "fid"),
    )
    nodes = train_nodes(arguments)
    if nodes > 1:
        raise UsageError(
            f"train_nodes={nodes} makes the train step a Kubeflow Trainer TrainJob, which needs a Kubernetes "
            "cluster with Trainer installed: submit it with `hybridmi submit` (a local run trains on this machine)"
        )
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    error_dir = root / ".errors" / uuid.uuid4().hex
    run_id = new_run_id()
    env = {ERROR_DIR_VAR: str(error_dir), RUN_ID_VAR: run_id, **({STORE_VAR: store_uri} if store_uri else {})}
    started_unix, start = time.time(), time.monotonic()
    if runner == "inprocess":
        run_dir = (
            root
            / f"{'hybridmi' if not only else 'hybridmi-rerun-' + only}-inprocess-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        )
        task_env = {**os.environ, **env, RESUME_FROM_VAR: arguments.get("resume_from", "")}
        if only:
            outputs = {only: run_stage_inprocess(only, cfg, inputs=dict(inputs or {}), run_dir=run_dir, env=task_env)}
        else:
            outputs = run_pipeline_inprocess(cfg, run_dir=run_dir, env=task_env)
        return LocalRun(runner, run_dir, outputs, time.monotonic() - start, run_id=run_id, started_unix=started_unix)
    if only:
        arguments.update({f"{name}_uri": str(Path(uri).resolve()) for name, uri in (inputs or {}).items()})
    from components.image import DEFAULT_IMAGE

    # SubprocessRunner ignores the image; the Docker runner runs it: unless given, the tag docker/build.sh gives this checkout.
    image = arguments.get("image") or (
        checkout_image(needed_for="the docker runner") if runner == "docker" else DEFAULT_IMAGE
    )
    pipeline_func = local_pipeline(pipeline_for(pipeline, only), image)
    if runner == "docker":
        kfp_runner, environ = docker_runner(container_env(env), gpu=gpu), {}
    else:
        from kfp import local

        kfp_runner, environ = local.SubprocessRunner(use_venv=False), env
    with patched_environ(environ):
        run_dir = _kfp_run(
            pipeline_func,
            arguments,
            runner=kfp_runner,
            pipeline_root=root,
            error_dir=error_dir,
            enable_caching=enable_caching,
        )
    outputs, metadata = scan_outputs(run_dir)
    return LocalRun(
        runner, run_dir, outputs, time.monotonic() - start, metadata, run_id=run_id, started_unix=started_unix
    )
