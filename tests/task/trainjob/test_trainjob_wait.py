"""Waiting for a TrainJob over a real HTTP Kubernetes API on loopback: states logged once each, failures in
one line with the TrainJob's reason, an API server that goes away (for good, or for a while), SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from crd_schema import OLDER_CRD_FILE
from fake_kube_api import COMPLETE, CREATED, FAILED, NAME, PREFIX, RUNNING, FakeKubeAPI, Scripted, condition
from fake_kube_api import sample_trainjob as body

from hybridmi.task.trainjob.api import ApiUnavailable, TrainJobApiError, TrainJobs
from hybridmi.task.trainjob.launch import TrainStepTerminated, run_trainjob
from hybridmi.task.trainjob.status import KubeUnreachable, TrainJobFailed, wait_for_trainjob

ROOT = Path(__file__).resolve().parents[3]


def test_wait__logs_each_state_once_in_order_and_returns_complete(caplog):
    with FakeKubeAPI(Scripted([CREATED, CREATED, RUNNING, RUNNING, RUNNING, COMPLETE])) as kube:
        jobs = TrainJobs(kube.api_client(), "kubeflow")
        with caplog.at_level(logging.INFO, logger="hybridmi.task.trainjob"):
            state = run_trainjob(jobs, body(), poll_s=0.01)
    assert state.phase == "Complete"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"TrainJob {NAME}: ")]
    assert [line.split(": ", 1)[1].split(";")[0] for line in lines] == ["Created", "Running", "Complete"]
    assert "node: 1 active, 1 ready" in lines[1]
    assert "Complete=True (AllJobsCompleted: jobset completed successfully)" in lines[2]
    created = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("created TrainJob"))
    assert "2 node(s) x 4 process(es)" in created and '"nvidia.com/gpu": "4"' in created


@pytest.mark.parametrize(
    "status, reason",
    [
        (FAILED, "FailedJobs: jobset failed due to one or more job failures"),
        (
            {"conditions": [condition("Failed", "DeadlineExceeded", "TrainJob exceeded its activeDeadlineSeconds")]},
            "DeadlineExceeded: TrainJob exceeded its activeDeadlineSeconds",
        ),
    ],
)
def test_wait__a_failed_trainjob_ends_in_one_line_with_its_reason(status, reason):
    with FakeKubeAPI(Scripted([RUNNING, status])) as kube:
        with pytest.raises(TrainJobFailed) as failed:
            run_trainjob(TrainJobs(kube.api_client(), "kubeflow"), body(), poll_s=0.01)
    message = str(failed.value)
    assert message.startswith(f"TrainJob {NAME} failed: {reason}") and "\n" not in message


def test_wait__an_api_server_that_goes_away_for_good_ends_the_wait_naming_the_trainjob():
    with FakeKubeAPI(Scripted([RUNNING])) as kube:
        jobs = TrainJobs(kube.api_client(), "kubeflow")
        jobs.create(body())
        kube.stop()
        start = time.monotonic()
        with pytest.raises(
            KubeUnreachable, match=rf"did not answer for \d+ s .* TrainJob {NAME}, which may still be running"
        ):
            wait_for_trainjob(lambda: jobs.get(NAME), name=NAME, poll_s=0.05, unreachable_s=0.5)
    assert time.monotonic() - start < 30  # bounded by unreachable_s, not by the client's own retries


def test_wait__an_api_server_that_comes_back_is_waited_for(caplog):
    with FakeKubeAPI(Scripted([RUNNING, RUNNING, COMPLETE])) as kube:
        jobs = TrainJobs(kube.api_client(), "kubeflow")
        jobs.create(body())
        assert jobs.get(NAME)["status"] == RUNNING
        kube.stop()
        with pytest.raises(ApiUnavailable, match=f"Kubernetes API at {kube.url}"):
            jobs.get(NAME)
        polls = []

        def get():
            polls.append(1)
            if len(polls) == 3:
                kube.start()  # back on the same port
            return jobs.get(NAME)

        with caplog.at_level(logging.INFO, logger="hybridmi.task.trainjob"):
            state = wait_for_trainjob(get, name=NAME, poll_s=0.05, unreachable_s=60)
    assert state.phase == "Complete"
    messages = [r.getMessage() for r in caplog.records]
    assert any("does not answer" in m for m in messages) and any("answers again" in m for m in messages)


def test_wait__a_trainjob_deleted_under_it_fails_the_step():
    with FakeKubeAPI(Scripted([RUNNING])) as kube:
        jobs = TrainJobs(kube.api_client(), "kubeflow")
        jobs.create(body())
        calls = []

        def get():
            calls.append(1)
            if len(calls) == 2:
                jobs.delete(NAME)  # someone ran kubectl delete trainjob
            return jobs.get(NAME)

        with pytest.raises(TrainJobFailed, match=f"TrainJob {NAME} was deleted before it finished"):
            wait_for_trainjob(get, name=NAME, poll_s=0.01)


@pytest.mark.parametrize(
    "server, message",
    [
        (dict(deny=True), "403 trainjobs.trainer.kubeflow.org is forbidden.*apply k8s/trainer/rbac"),
        (
            dict(installed=False),
            "404 the server could not find the requested resource.*install Kubeflow Trainer: k8s/trainer",
        ),
    ],
)
def test_api__refusals_end_in_one_line_saying_what_to_fix(server, message):
    with FakeKubeAPI(Scripted([RUNNING]), **server) as kube:
        with pytest.raises(TrainJobApiError, match=message) as refused:
            run_trainjob(TrainJobs(kube.api_client(), "kubeflow"), body(), poll_s=0.01)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "numNode",
            2,
            r'400 TrainJob in version "v1alpha1" cannot be handled as a TrainJob: strict decoding error: '
            r'unknown field "spec.trainer.numNode" \(the cluster\'s TrainJob CRD has no field spec.trainer.numNode',
        ),
        ("numNodes", "two", r"422 .* is invalid: spec.trainer.numNodes: 'two' is not of type 'integer'"),
    ],
    ids=["a field the CRD lacks", "a value the CRD refuses"],
)
def test_api__an_object_the_crd_refuses_is_named_with_the_servers_message(field, value, message):
    bad = body()
    bad["spec"]["trainer"][field] = value
    with FakeKubeAPI(Scripted([RUNNING])) as kube:
        with pytest.raises(TrainJobApiError, match=rf"creating TrainJob {NAME} in namespace kubeflow: {message}"):
            TrainJobs(kube.api_client(), "kubeflow").create(bad)
        assert kube.jobs == {}


def test_fake_api__without_strict_validation_an_older_trainer_drops_the_fields_it_lacks_with_a_warning():
    """What the Strict create guards against, as a real API server does it (fieldValidation defaults to Warn)."""
    with FakeKubeAPI(Scripted([RUNNING]), crd_file=OLDER_CRD_FILE) as kube:
        request = urllib.request.Request(
            f"{kube.url}{PREFIX}kubeflow/trainjobs",
            data=json.dumps(body()).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201
            warnings = response.headers.get_all("Warning")
        stored = kube.jobs[NAME]
    assert warnings == [
        '299 - "unknown field \\"spec.activeDeadlineSeconds\\""',
        '299 - "unknown field \\"spec.runtimePatches\\""',
    ]
    assert "runtimePatches" not in stored["spec"] and "activeDeadlineSeconds" not in stored["spec"]


def test_retried_task__waits_out_a_trainjob_being_deleted_and_creates_it_again():
    with FakeKubeAPI(Scripted([RUNNING, FAILED], [COMPLETE])) as kube:  # waited for, the going one would fail the step
        going = {**body(), "metadata": {**body()["metadata"], "deletionTimestamp": "2026-08-01T10:05:00Z"}}
        kube.jobs[NAME] = going  # the earlier attempt deleted it; its pods are still terminating
        kube.controller.start(going)
        state = run_trainjob(TrainJobs(kube.api_client(), "kubeflow"), body(), poll_s=0.01)
    assert state.phase == "Complete"
    assert [r.method for r in kube.requests][:4] == ["GET", "DELETE", "GET", "POST"]


def test_sigterm__deletes_the_trainjob_so_its_nodes_stop(tmp_path):
    """A terminated run (or the pod's deadline) sends SIGTERM to the task: the TrainJob must not outlive it."""
    with FakeKubeAPI(Scripted([RUNNING])) as kube:
        script = tmp_path / "task.py"
        script.write_text(
            textwrap.dedent(f"""
            import json, logging, sys
            from kubernetes import client
            from hybridmi.task.trainjob.api import TrainJobs
            from hybridmi.task.trainjob.launch import run_trainjob
            logging.basicConfig(level=logging.INFO)
            configuration = client.Configuration()
            configuration.host = {kube.url!r}
            run_trainjob(TrainJobs(client.ApiClient(configuration), "kubeflow"), json.loads(sys.argv[1]), poll_s=0.05)
        """)
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, str(script), json.dumps(body())], env=env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while len(kube.methods("GET")) < 3 and time.monotonic() < deadline:  # created and being waited for
            time.sleep(0.05)
        assert kube.methods("POST"), "the task did not create its TrainJob"
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "TrainStepTerminated: the train step was terminated (signal 15)" in stderr
    assert [r.path.rsplit("/", 1)[-1] for r in kube.methods("DELETE")] == [NAME]
    assert kube.jobs == {}


def test_sigterm_swallowed_by_a_log_handler__still_deletes_the_trainjob_and_ends(monkeypatch):
    """SIGTERM's raise can land inside a logging handler, which swallows it: the wait loop must still end the task."""
    fired: list[int] = []

    class KillingHandler(logging.StreamHandler):
        def flush(self) -> None:  # inside StreamHandler.emit's try: an exception here goes to handleError
            super().flush()
            if not fired:
                fired.append(1)
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError stays silent, as in production
    status_log = logging.getLogger("hybridmi.task.trainjob.status")
    handler, level = KillingHandler(), status_log.level
    status_log.addHandler(handler)
    status_log.setLevel(logging.INFO)  # setLevel, not the attribute: it also clears the logger's cache
    try:
        with FakeKubeAPI(Scripted([RUNNING] * 40 + [COMPLETE])) as kube:
            with pytest.raises(TrainStepTerminated, match="signal 15"):
                run_trainjob(TrainJobs(kube.api_client(), "kubeflow"), body(), poll_s=0.01)
    finally:
        status_log.removeHandler(handler)
        status_log.setLevel(level)
    assert fired and [r.path.rsplit("/", 1)[-1] for r in kube.methods("DELETE")] == [NAME]
