"""A loopback HTTP server that speaks the part of the KFP v2beta1 REST API kfp.Client uses to submit and watch a run.

Endpoints (what kfp 2.17's Client calls for create_run_from_pipeline_package + get_run):
GET /apis/v2beta1/healthz, GET/POST /apis/v2beta1/experiments, POST /apis/v2beta1/runs,
GET /apis/v2beta1/runs/{id}. A run reports PENDING, then RUNNING ``polls_running`` times, then
``final_state`` (with an error message unless SUCCEEDED); ``final_state=None`` keeps it RUNNING.
Every request is recorded with its headers. ``token`` / ``cookie``: required credentials (401 otherwise).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PREFIX = "/apis/v2beta1"
CREATED, FINISHED = "2026-08-01T10:00:00Z", "2026-08-01T10:12:03Z"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict  # lower-case names
    body: dict | None


@dataclass
class FakeKFP:
    token: str | None = None
    cookie: str | None = None
    multi_user: bool = False
    final_state: str | None = "SUCCEEDED"
    polls_running: int = 1
    reject_runs: str | None = None  # a message: POST /runs answers 400 with it (a package the server refuses)
    requests: list[Recorded] = field(default_factory=list)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)

    def authorized(self, headers) -> bool:
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return False
        return not self.cookie or self.cookie in (headers.get("Cookie") or "")

    def handle(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        if path == f"{PREFIX}/healthz" and method == "GET":
            return 200, {"commit_sha": "fake", "tag_name": "2.17.0", "multi_user": self.multi_user}
        if path == f"{PREFIX}/experiments" and method == "GET":
            wanted = json.loads(query.get("filter", ["{}"])[0]).get("predicates", [{}])[0].get("stringValue")
            found = [e for e in self.experiments.values() if e["display_name"] == wanted]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if path == f"{PREFIX}/experiments" and method == "POST":
            experiment = {**body, "experiment_id": uuid.uuid4().hex}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if path == f"{PREFIX}/runs" and method == "POST":
            if self.reject_runs:
                return 400, {"error": self.reject_runs, "code": 3, "message": self.reject_runs}
            run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING", "created_at": CREATED}
            self.runs[run["run_id"]] = run
            return 200, run
        if path.startswith(f"{PREFIX}/runs/") and method == "GET":
            run_id = path.rsplit("/", 1)[1]
            if run_id not in self.runs:
                return 404, {"error": "not found", "code": 5, "message": f"run {run_id} not found"}
            polls = self.polls[run_id] = self.polls.get(run_id, 0) + 1
            run = {k: v for k, v in self.runs[run_id].items() if k != "pipeline_spec"}
            if polls > self.polls_running + 1 and self.final_state is not None:
                run.update(state=self.final_state, finished_at=FINISHED)
                if self.final_state != "SUCCEEDED":
                    run["error"] = {"code": 9, "message": f"the run ended {self.final_state}\n(task train)"}
            else:
                run["state"] = "PENDING" if polls == 1 else "RUNNING"
            return 200, run
        return 404, {"error": "Not Found", "code": 5, "message": f"no route {method} {path}"}


class _Handler(BaseHTTPRequestHandler):
    api: FakeKFP

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.api.requests.append(
            Recorded(method, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, body)
        )
        if not self.api.authorized(self.headers):
            status, doc = 401, {"error": "Unauthenticated", "code": 16, "message": "Request is missing credentials"}
        else:
            status, doc = self.api.handle(method, parts.path, parse_qs(parts.query), body)
        payload = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, *args) -> None:
        pass


class Serving:
    """``with Serving(FakeKFP(...)) as url:`` a server on a free loopback port, stopped on exit."""

    def __init__(self, api=None, handler: type[BaseHTTPRequestHandler] | None = None) -> None:
        cls = handler or type("Handler", (_Handler,), {"api": api})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), cls)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
