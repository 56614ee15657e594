"""A loopback HTTP server speaking the part of the Kubernetes API the kubernetes client uses for TrainJobs,
with a stand-in for the Trainer controller that moves each TrainJob through its status.

Endpoints: POST /apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs, handled as an API server
handles a custom object: fields the CRD does not declare are pruned, with a ``Warning`` header each
(``?fieldValidation=Warn``, the default), silently (``Ignore``), or refused with 400 BadRequest naming
them all (``Strict``: "TrainJob in version "v1alpha1" cannot be handled as a TrainJob: strict decoding
error: unknown field "spec.runtimePatches""); then the rest is validated against the vendored CRD
(422 Invalid, as are owner references without apiVersion, kind, name or uid), and 409 answers a name
that exists. GET and DELETE .../trainjobs/{name} (404 Status when absent). Errors are Kubernetes
``Status`` objects. ``crd_file``: the CRD the cluster serves (crd_schema.OLDER_CRD_FILE: a Trainer
v2.1.0); ``deny``: every request answers 403 (no RBAC); ``installed=False``: 404 (no TrainJob API).

Controllers (what a TrainJob's status does after it is created):
- ``Scripted(statuses)``: the n-th GET of a job returns the n-th status document (the last one sticks).
- ``Processes(secrets=...)``: runs the TrainJob's command for real, one process per node, with the
  env the Trainer would give it (trainer.env with secretKeyRef resolved from ``secrets``, PET_* for
  torchrun) — Running while they run, Complete when all exit 0, Failed (JobSet's FailedJobs) otherwise.
The server can be stopped and started again on the same port (an API server that goes away).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from crd_schema import CRD_FILE, prune_unknown, validate_trainjob

PREFIX = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/"
CREATED_AT = "2026-08-01T10:00:00Z"
NAME = "hybridmi-train-0123456789"
TASK_POD = (
    "hybridmi-multinode-abc12-system-container-impl-1234567890",
    "5f0e6a4c-2b1d-4c3e-9a8f-0123456789ab",
)  # name, uid


def sample_trainjob(name: str = NAME) -> dict:
    """A rendered TrainJob: 2 nodes x 4 GPUs in namespace kubeflow."""
    from hybridmi.task.trainjob.manifest import NodeSettings, TrainJobRequest, render_trainjob

    return render_trainjob(
        TrainJobRequest(
            name=name,
            namespace="kubeflow",
            settings=NodeSettings(
                image="registry.example.com/hybridmi:0.1.0-abcdef012345", nodes=2, gpu_count="4", deadline_s=3600
            ),
            config_text="train:\n  epochs: 1\n",
            config_hash="c0ffee",
            run_id="run-1",
            dataset_uri="s3://b/p/datasets/00ff00ff",
            model_uri="s3://b/p/runs/run-1/c0ffee/train/model",
        )
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def condition(kind: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": CREATED_AT}


def jobs_status(active: int = 0, ready: int = 0, succeeded: int = 0, failed: int = 0) -> list[dict]:
    return [
        {"name": "node", "active": active, "ready": ready, "succeeded": succeeded, "failed": failed, "suspended": 0}
    ]


CREATED = {}
RUNNING = {"jobsStatus": jobs_status(active=1, ready=1)}
COMPLETE = {
    "conditions": [condition("Complete", "AllJobsCompleted", "jobset completed successfully")],
    "jobsStatus": jobs_status(succeeded=1),
}
FAILED = {
    "conditions": [
        condition("Failed", "FailedJobs", "jobset failed due to one or more job failures (first failed job: x-node-0)")
    ],
    "jobsStatus": jobs_status(failed=1),
}


def owner_reference_problems(obj: dict) -> list[str]:
    """ObjectMeta validation of metadata.ownerReferences (apimachinery ValidateOwnerReferences, in part)."""
    problems = []
    for i, ref in enumerate(obj.get("metadata", {}).get("ownerReferences") or []):
        for key, what in (("apiVersion", "version"), ("kind", "kind"), ("name", "name"), ("uid", "uid")):
            if not ref.get(key):
                problems.append(f'metadata.ownerReferences[{i}].{key}: Invalid value: "": {what} must not be empty')
    return problems


class Scripted:
    """The n-th GET of a TrainJob answers the n-th status (the last one repeats); ``then``: the statuses
    of the next TrainJob created (a retried task's), and so on."""

    def __init__(self, statuses: list[dict], *then: list[dict]) -> None:
        self.runs = [statuses, *then]
        self.created = 0
        self.script: dict[str, list[dict]] = {}
        self.gets: dict[str, int] = {}

    def start(self, obj: dict) -> None:
        name = obj["metadata"]["name"]
        self.script[name] = self.runs[min(self.created, len(self.runs) - 1)]
        self.created += 1
        self.gets[name] = 0

    def status(self, obj: dict) -> dict:
        name = obj["metadata"]["name"]
        statuses, n = self.script[name], self.gets[name]
        self.gets[name] = n + 1
        return statuses[min(n, len(statuses) - 1)]

    def stop(self, obj: dict) -> None:
        self.gets.pop(obj["metadata"]["name"], None)
        self.script.pop(obj["metadata"]["name"], None)


@dataclass
class Processes:
    """Run each TrainJob's command as the Trainer's torch runtime would: one process group per node."""

    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # Secret name -> key -> value
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # what the image sets (PYTHONPATH of its install)
    running: dict[str, list[subprocess.Popen]] = field(default_factory=dict)

    def node_env(self, obj: dict, rank: int, port: int) -> dict[str, str]:
        trainer = obj["spec"]["trainer"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDMI_", "AWS_", "PET_"))}
        # The image's PATH holds its venv (torchrun); here that is this interpreter's.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(self.extra_env)
        for var in trainer.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                value = self.secrets.get(ref["name"], {}).get(ref["key"])
                if value is None and not ref.get("optional"):
                    raise ValueError(f"secret {ref['name']} has no key {ref['key']}")
                if value is not None:
                    env[var["name"]] = value
        env.update(
            {
                "PET_NNODES": str(trainer.get("numNodes", 1)),
                "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", 1)),
                "PET_NODE_RANK": str(rank),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
        )
        return env

    def start(self, obj: dict) -> None:
        trainer, name = obj["spec"]["trainer"], obj["metadata"]["name"]
        port, procs = free_port(), []
        for rank in range(trainer.get("numNodes", 1)):
            log = open(self.log_dir / f"{name}-node-{rank}.log", "wb") if self.log_dir else subprocess.DEVNULL
            procs.append(
                subprocess.Popen(
                    trainer["command"] + trainer.get("args", []),
                    env=self.node_env(obj, rank, port),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        self.running[name] = procs

    def status(self, obj: dict) -> dict:
        codes = [p.poll() for p in self.running.get(obj["metadata"]["name"], [])]
        if any(c is None for c in codes):
            return {"jobsStatus": jobs_status(active=1, ready=1)}
        if all(c == 0 for c in codes):
            return COMPLETE
        return {
            "conditions": [
                condition("Failed", "FailedJobs", f"jobset failed due to one or more job failures (exit codes {codes})")
            ],
            "jobsStatus": jobs_status(failed=1),
        }

    def stop(self, obj: dict) -> None:
        for proc in self.running.pop(obj["metadata"]["name"], []):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    body: dict | None = None


class FakeKubeAPI:
    """The server: ``url`` for a kubernetes ``Configuration(host=...)``; ``jobs`` holds the stored objects."""

    def __init__(
        self, controller: Any, *, deny: bool = False, installed: bool = True, crd_file: str = CRD_FILE
    ) -> None:
        self.controller, self.deny, self.installed, self.crd_file = controller, deny, installed, crd_file
        self.jobs: dict[str, dict] = {}
        self.requests: list[Recorded] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # -- the API ------------------------------------------------------------------------------------
    @staticmethod
    def status_object(code: int, reason: str, message: str) -> dict:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }

    def handle(
        self,
        method: str,
        path: str,
        body: dict | None,
        query: dict[str, list[str]] | None = None,
        warnings: list[str] | None = None,
    ) -> tuple[int, dict]:
        """(HTTP status, response object) of one request; ``warnings`` receives the Warning headers to send."""
        if self.deny:
            return 403, self.status_object(
                403,
                "Forbidden",
                f"trainjobs.trainer.kubeflow.org is forbidden: User "
                f'"system:serviceaccount:kubeflow:pipeline-runner" cannot {method.lower()} resource "trainjobs"',
            )
        if not path.startswith(PREFIX) or not self.installed:
            return 404, self.status_object(404, "NotFound", "the server could not find the requested resource")
        namespace, _, rest = path[len(PREFIX) :].partition("/")
        plural, _, name = rest.partition("/")
        if plural != "trainjobs":
            return 404, self.status_object(404, "NotFound", "the server could not find the requested resource")
        with self._lock:
            if method == "POST" and not name:
                directive = (query or {}).get("fieldValidation", ["Warn"])[-1]
                return self._create(namespace, body or {}, directive, [] if warnings is None else warnings)
            stored = self.jobs.get(name)
            if stored is None:
                return 404, self.status_object(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
            if method == "GET":
                return 200, {**stored, "status": self.controller.status(stored)}
            if method == "DELETE":
                self.controller.stop(stored)
                del self.jobs[name]
                return 200, {**self.status_object(200, "", ""), "status": "Success"}
        return 405, self.status_object(405, "MethodNotAllowed", f"{method} is not supported here")

    def _create(self, namespace: str, obj: dict, directive: str, warnings: list[str]) -> tuple[int, dict]:
        name = obj.get("metadata", {}).get("name", "")
        if directive not in ("Ignore", "Warn", "Strict"):
            return 400, self.status_object(
                400, "BadRequest", f"fieldValidation {directive!r} is not Ignore, Warn or Strict"
            )
        obj, unknown = prune_unknown(obj, self.crd_file)
        if unknown and directive == "Strict":  # apiserver handlers: transformDecodeError of a StrictDecodingError
            version = obj.get("apiVersion", "").rpartition("/")[2]
            return 400, self.status_object(
                400,
                "BadRequest",
                f'{obj.get("kind")} in version "{version}" cannot be handled as '
                "a TrainJob: strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in unknown),
            )
        if directive == "Warn":
            warnings.extend(f'unknown field "{path}"' for path in unknown)
        problems = validate_trainjob(obj, self.crd_file) + owner_reference_problems(obj)
        if obj.get("metadata", {}).get("namespace", namespace) != namespace:
            problems.append("the namespace of the provided object does not match the namespace sent on the request")
        if problems:
            return 422, self.status_object(
                422, "Invalid", f'TrainJob.trainer.kubeflow.org "{name}" is invalid: ' + "; ".join(problems)
            )
        if name in self.jobs:
            return 409, self.status_object(
                409, "AlreadyExists", f'trainjobs.trainer.kubeflow.org "{name}" already exists'
            )
        stored = {
            **obj,
            "metadata": {
                **obj["metadata"],
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": CREATED_AT,
                "resourceVersion": "1",
            },
        }
        self.jobs[name] = stored
        self.controller.start(stored)
        return 201, stored

    # -- the server ---------------------------------------------------------------------------------
    def start(self) -> "FakeKubeAPI":
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                api.requests.append(Recorded(self.command, parts.path, parts.query, body))
                warnings: list[str] = []
                code, payload = api.handle(self.command, parts.path, body, parse_qs(parts.query), warnings)
                data = json.dumps(payload).encode()
                self.send_response(code)
                for warning in warnings:
                    self.send_header("Warning", f"299 - {json.dumps(warning)}")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Go away: stop answering and close the port (``start`` brings it back on the same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.stop()
        for stored in list(self.jobs.values()):
            self.controller.stop(stored)

    def __enter__(self) -> "FakeKubeAPI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def api_client(self):
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    def methods(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method]
