"""Waiting for a run (`wait_for_final_state`) through the errors kfp.Client really raises: kfp_server_api's
ApiException for an HTTP answer, urllib3's errors when nothing answers. A clock that moves only when the
wait sleeps keeps the long backoffs instant; one test polls a real loopback server with the real kfp.Client
while it fails, goes away and comes back."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.client import RemoteDisconnected
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from kfp_server_api import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from hybridmi.runners.connection import Auth, Backoff, WaitTimedOut, connect, wait_for_final_state

RUN_PATH = "/apis/v2beta1/runs/run-1"


class Clock:
    """Time that passes only when the wait sleeps; every pause is recorded."""

    def __init__(self) -> None:
        self.now, self.pauses = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def scripted(*answers):
    """A get_run that raises or returns ``answers`` in turn; ``.calls`` counts the polls."""
    queue = list(answers)

    def get_run():
        get_run.calls += 1
        answer = queue.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    get_run.calls = 0
    return get_run


def run(state: str) -> SimpleNamespace:
    return SimpleNamespace(state=state)


def refused() -> MaxRetryError:
    """What kfp.Client raises once urllib3's own retries of a closed port are spent."""
    cause = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return MaxRetryError(None, RUN_PATH, cause)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_wait__rides_out_5xx_429_and_network_errors_until_the_run_succeeds(caplog):
    clock = Clock()
    get_run = scripted(
        ApiException(status=503, reason="Service Unavailable"),
        ApiException(status=502, reason="Bad Gateway"),
        ApiException(status=429, reason="Too Many Requests"),
        ConnectionRefusedError(111, "Connection refused"),
        refused(),
        ProtocolError("Connection aborted.", RemoteDisconnected("closed without response")),
        run("RUNNING"),
        run("SUCCEEDED"),
    )
    with caplog.at_level(logging.WARNING):
        got = wait_for_final_state(get_run, timeout_s=3600, poll_s=10, clock=clock, sleep=clock.sleep)
    assert got.state == "SUCCEEDED" and get_run.calls == 8
    assert clock.pauses == [5, 10, 20, 40, 80, 160, 10]  # backoff doubling from 5 s, then the poll interval again
    lost, back = warnings_of(caplog)  # one when the API is lost, one when it is back, nothing per failed poll
    assert "lost the Kubeflow Pipelines API (HTTP 503 Service Unavailable)" in lost
    assert "answers again, after 6 failed polls over 315 s" in back


def test_wait__backoff_doubles_up_to_its_cap():
    clock = Clock()
    get_run = scripted(*[refused()] * 6, run("FAILED"))
    got = wait_for_final_state(
        get_run, timeout_s=3600, poll_s=1, backoff=Backoff(first_s=1, most_s=4), clock=clock, sleep=clock.sleep
    )
    assert got.state == "FAILED" and clock.pauses == [1, 2, 4, 4, 4, 4]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_wait__an_http_refusal_ends_at_once(status):
    clock = Clock()
    get_run = scripted(ApiException(status=status, reason="no"), run("SUCCEEDED"))
    with pytest.raises(ApiException) as raised:
        wait_for_final_state(get_run, timeout_s=3600, clock=clock, sleep=clock.sleep)
    assert raised.value.status == status and get_run.calls == 1 and clock.pauses == []


def test_wait__unreachable_until_the_deadline_says_so_and_never_sleeps_past_it():
    clock = Clock()
    get_run = scripted(run("RUNNING"), *[refused()] * 20)
    with pytest.raises(WaitTimedOut) as raised:
        wait_for_final_state(get_run, timeout_s=600, poll_s=10, clock=clock, sleep=clock.sleep)
    assert not raised.value.answering and isinstance(raised.value, TimeoutError)
    assert clock.pauses == [10, 5, 10, 20, 40, 80, 160, 275] and clock.now == 600  # the last poll is at the deadline
    assert str(raised.value) == (
        "the API has not answered for the last 590 s of the 600 s wait (NewConnectionError: "
        "None: Failed to establish a new connection: [Errno 111] Connection refused); "
        "the run was RUNNING when last seen"
    )


def test_wait__still_running_at_the_deadline_while_the_api_answers():
    clock = Clock()
    with pytest.raises(WaitTimedOut) as raised:
        wait_for_final_state(lambda: run("RUNNING"), timeout_s=25, poll_s=10, clock=clock, sleep=clock.sleep)
    assert raised.value.answering and str(raised.value) == "the run is still RUNNING after 25 s"
    assert clock.pauses == [10, 10, 5]


def test_backoff__refuses_a_pause_that_would_spin():
    with pytest.raises(ValueError, match="0 < first <= most"):
        Backoff(first_s=0)


class FlakyKFP:
    """A KFP API on a loopback port that can be stopped (the port then refuses) and restarted on the same port.

    GET healthz answers; GET the run answers ``statuses`` in turn: an int is that HTTP error, a string the run's state.
    """

    def __init__(self, *statuses) -> None:
        self.statuses, self.polls = list(statuses), 0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = None

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/healthz"):
                    status, doc = 200, {"multi_user": False}
                else:
                    api.polls += 1
                    answer = api.statuses.pop(0)
                    if isinstance(answer, int):
                        status, doc = answer, {"message": "unavailable"}
                    else:
                        status, doc = 200, {"run_id": "run-1", "state": answer}
                payload = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def test_wait__outlasts_a_real_server_that_fails_goes_away_and_comes_back(caplog):
    api = FlakyKFP(503, 503, "RUNNING", "SUCCEEDED")
    api.start()
    try:
        client = connect(f"http://127.0.0.1:{api.port}", Auth())
        pauses = []

        def sleep(seconds: float) -> None:  # the world between polls: the server goes away, then comes back
            pauses.append(seconds)
            if len(pauses) == 2:
                api.stop()
            if len(pauses) == 5:
                api.start()

        with caplog.at_level(logging.WARNING, logger="hybridmi"):
            got = wait_for_final_state(
                lambda: client.get_run("run-1"),
                timeout_s=30,
                poll_s=0.01,
                backoff=Backoff(first_s=0.01, most_s=0.04),
                sleep=sleep,
            )
    finally:
        api.stop()
    assert (
        got.state == "SUCCEEDED" and api.polls == 4
    )  # 503, 503, (three polls find the port closed), RUNNING, SUCCEEDED
    assert pauses == [0.01, 0.02, 0.04, 0.04, 0.04, 0.01]
    lost, back = [m for m in warnings_of(caplog) if "Kubeflow Pipelines API" in m]
    assert "HTTP 503" in lost and "after 5 failed polls" in back
