"""`hybridmi submit` against real loopback HTTP servers: a KFP v2beta1 stand-in (kfp_api_server.py) driven by the
real kfp.Client, a server that answers 404 to everything, and a closed port. The command's exit code, its one
line of output and what reached the server are the assertions."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from kfp_api_server import FakeKFP, Serving

from hybridmi.cli import main
from hybridmi.config import config_from_text

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
IMAGE = "registry.example.com/ml/hybridmi:0.1.0-abcdef012345"


def submit(capsys, host: str, *extra: str) -> tuple[int, str, str]:
    code = main(["submit", "--host", host, "--config", str(SMOKE), "--image", IMAGE, "--poll", "0.01", *extra])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def one_error_line(err: str) -> str:
    """The command's own error line; fails when there is a traceback or more than one."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("hybridmi:")]
    assert len(lines) == 1, err
    return lines[0]


def runs_posted(api: FakeKFP) -> list[dict]:
    return [r.body for r in api.requests if r.method == "POST" and r.path.endswith("/runs")]


def spec_of(run: dict) -> dict:
    """The pipeline spec kfp.Client sends (with a platform spec beside it: our packages have Kubernetes settings)."""
    assert set(run["pipeline_spec"]) == {"pipeline_spec", "platform_spec"}
    return run["pipeline_spec"]["pipeline_spec"]


@pytest.mark.parametrize("state, code", [("SUCCEEDED", 0), ("FAILED", 3), ("CANCELED", 4), ("SKIPPED", 5)])
def test_wait__ends_on_every_final_state_with_its_exit_code_and_one_line(capsys, state, code):
    api = FakeKFP(token="s3cret", final_state=state)
    with Serving(api) as host:
        got, out, _ = submit(capsys, host, "--token", "s3cret", "--wait", "--ui-url", "https://kf.example.com/pipeline")
    assert got == code
    (run_id,) = api.runs
    assert out == (
        f"run {run_id} {state} after 12m03s"
        + ("" if state == "SUCCEEDED" else f": the run ended {state} (task train)")
        + f": https://kf.example.com/pipeline/#/runs/details/{run_id}"
    )
    assert all(r.headers.get("authorization") == "Bearer s3cret" for r in api.requests)


def test_submit__posts_the_compiled_pipeline_with_the_resolved_config_and_the_image(capsys):
    api = FakeKFP()
    with Serving(api) as host:
        code, out, _ = submit(
            capsys,
            host,
            "--set",
            "train.epochs=2",
            "--param",
            "ddim_sample_steps=5",
            "--accelerator-count",
            "",
            "--param",
            'gpu_node_selector={"pool": "a100"}',
            "--no-cache",
        )
    assert code == 0
    (run,) = runs_posted(api)
    assert spec_of(run)["pipelineInfo"]["name"] == "hybridmi"
    params = run["runtime_config"]["parameters"]
    cfg = config_from_text(params["config"])
    assert (cfg.train.epochs, cfg.sampling.steps) == (2.0, 5)
    assert (params["image"], params["gpu_count"], params["gpu_node_selector"]) == (IMAGE, "", {"pool": "a100"})
    tasks = spec_of(run)["root"]["dag"]["tasks"]
    assert all(
        not t.get("cachingOptions", {}).get("enableCache") for t in tasks.values()
    )  # --no-cache reached the package
    (run_id,) = api.runs
    assert out == f"run {run_id} submitted: {host}/#/runs/details/{run_id}"
    (experiment,) = api.experiments.values()
    assert experiment["display_name"] == "hybridmi" and run["experiment_id"] == experiment["experiment_id"]


def test_submit__reads_a_token_file_named_by_the_kfp_convention(capsys, tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("from-file\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    api = FakeKFP(token="from-file")
    with Serving(api) as host:
        code, _, _ = submit(capsys, host)
    assert code == 0 and runs_posted(api)
    assert {r.headers.get("authorization") for r in api.requests} == {"Bearer from-file"}


def test_submit__sends_a_session_cookie_and_the_profile_namespace(capsys):
    api = FakeKFP(cookie="authservice_session=abc", multi_user=True)
    with Serving(api) as host:
        code, _, err = submit(capsys, host, "--cookie", "authservice_session=abc")
        assert code == 1 and "is multi-user: pass --namespace" in one_error_line(err)
        code, _, _ = submit(capsys, host, "--cookie", "authservice_session=abc", "--namespace", "team-a")
    assert code == 0
    (experiment,) = api.experiments.values()
    assert experiment["namespace"] == "team-a"


def test_refused_credentials__one_line_naming_host_and_flags(capsys):
    api = FakeKFP(token="right")
    with Serving(api) as host:
        code, _, err = submit(capsys, host, "--token", "wrong")
    line = one_error_line(err)
    assert code == 1 and host in line and "HTTP 401" in line and "--token" in line and "--cookie" in line
    assert not runs_posted(api)


class NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args) -> None:
        pass


def test_host_without_kfp__one_line_saying_so(capsys):
    with Serving(handler=NotFound) as host:
        code, _, err = submit(capsys, host)
    line = one_error_line(err)
    assert code == 1 and f"no Kubeflow Pipelines API at {host}" in line and "HTTP 404" in line


def test_unreachable_host__one_line_not_a_traceback(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    code, _, err = submit(capsys, f"http://127.0.0.1:{port}")
    line = one_error_line(err)
    assert (
        code == 1 and f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}" in line and "port-forward" in line
    )


def test_package_refused_by_the_server__one_line_with_its_message(capsys):
    api = FakeKFP(reject_runs="Failed to create a run: invalid pipeline spec: unknown field")
    with Serving(api) as host:
        code, _, err = submit(capsys, host)
    line = one_error_line(err)
    assert code == 1 and host in line and "HTTP 400: Failed to create a run: invalid pipeline spec" in line


def test_wait__gives_up_at_the_timeout_with_its_own_exit_code(capsys):
    api = FakeKFP(final_state=None)
    with Serving(api) as host:
        code, _, err = submit(capsys, host, "--wait", "--timeout", "0.05")
    (run_id,) = api.runs
    assert code == 7
    line = one_error_line(err)
    assert f"run {run_id}: the run is still RUNNING after 0.05 s; it goes on" in line


def test_rerun__imports_the_uris_kfp_shows_and_never_caches_by_default(capsys):
    api = FakeKFP()
    uris = {
        "dataset": "minio://mlpipeline/v2/artifacts/hybridmi/run-1/prepare/dataset",
        "model": "minio://mlpipeline/v2/artifacts/hybridmi/run-1/train/model",
    }
    with Serving(api) as host:
        code, _, _ = submit(capsys, host, "--only", "probe", *(f"--from={k}={v}" for k, v in uris.items()))
    assert code == 0
    (run,) = runs_posted(api)
    assert spec_of(run)["pipelineInfo"]["name"] == "hybridmi-rerun-probe"
    assert {k: run["runtime_config"]["parameters"][f"{k}_uri"] for k in uris} == uris
    tasks = spec_of(run)["root"]["dag"]["tasks"]
    assert all(not t.get("cachingOptions", {}).get("enableCache") for t in tasks.values())
    assert run["display_name"] == "hybridmi-rerun-probe"


@pytest.mark.parametrize(
    "uri, problem",
    [
        ("/tmp/model", "scheme '(none)' is not one of minio://, s3://, gs://"),
        ("https://bucket/model", "scheme 'https' is not one of"),
        ("minio:///v2/artifacts/model", "'' is not a bucket name"),
        ("s3://My_Bucket/model", "'My_Bucket' is not a bucket name"),
        ("gs://bucket", "no object key after the bucket"),
        ("minio://mlpipeline/", "no object key after the bucket"),
        # The launcher opens any bucket but the pipeline root's from the pod's environment alone (s3://: AWS).
        (
            "s3://my-bucket/v2/artifacts/model",
            "the KFP launcher reads imported artifacts only from the pipeline root's bucket minio://mlpipeline",
        ),
        (
            "minio://other-bucket/v2/artifacts/model",
            "the KFP launcher reads imported artifacts only from the pipeline root's bucket minio://mlpipeline",
        ),
    ],
)
def test_rerun__bad_uris_are_refused_before_contacting_the_cluster(capsys, uri, problem):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = submit(
        capsys,
        f"http://127.0.0.1:{port}",
        "--only",
        "probe",
        "--from",
        "dataset=minio://mlpipeline/v2/artifacts/d",
        "--from",
        f"model={uri}",
    )
    line = one_error_line(err)
    assert code == 1 and f"--from model={uri}: {problem}" in line  # not "cannot reach": nothing was sent


@pytest.mark.parametrize(
    "args, problem",
    [
        (["--image", "hybridmi:latest"], "needs an explicit non-latest tag"),
        (["--image", "registry.example.com/hybridmi"], "needs an explicit non-latest tag"),
        (["--param", 'gpu_tolerations={"key": "x"}'], "gpu_tolerations={'key': 'x'} must be a list"),
        (["--param", 'gpu_tolerations=[{"key": "x", "effect": "Sometimes"}]'], "is not a Kubernetes toleration"),
        (["--param", "gpu_node_selector=pool=a100"], "is not JSON"),
        (["--param", "task_memory_limit=lots"], "is not a Kubernetes quantity"),
        (["--resume-from", "../other"], "resume_from='../other' is not a run id"),
        (["--task-timeout", "trian=60"], "timeout for unknown stage(s) trian"),
        (["--param", "store_secret=Hybridmi_Store"], "store_secret='Hybridmi_Store' is not a Kubernetes object name"),
        (["--image-pull-secret", "Reg_Cred"], "image pull secret 'Reg_Cred' is not a Kubernetes object name"),
    ],
)
def test_bad_run_parameters__one_line_before_contacting_the_cluster(capsys, args, problem):
    code, _, err = main_submit_offline(capsys, args)
    assert code == 1 and problem in one_error_line(err)


def main_submit_offline(capsys, args: list[str]) -> tuple[int, str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["submit", "--host", f"http://127.0.0.1:{port}", "--config", str(SMOKE), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_wait__api_gone_until_the_timeout__exit_7_naming_the_run_and_its_link(capsys):
    api = FakeKFP(final_state=None)
    serving = Serving(api)
    accept = api.handle

    def gone_after_submission(method, path, query, body):  # a port-forward that dies once the run is created
        answer = accept(method, path, query, body)
        if method == "POST" and path.endswith("/runs"):
            threading.Thread(target=lambda: (serving.server.shutdown(), serving.server.server_close())).start()
        return answer

    api.handle = gone_after_submission
    with serving as host:
        code, _, err = submit(capsys, host, "--wait", "--timeout", "1")
    (run_id,) = api.runs
    line = one_error_line(err)
    assert code == 7
    assert f"run {run_id}: the API has not answered for the last " in line and "Connection refused" in line
    assert line.endswith(f"it may still be going on: {host}/#/runs/details/{run_id}")


def test_rerun__uris_in_the_bucket_of_a_named_pipeline_root_are_accepted(capsys):
    api = FakeKFP()
    model = "s3://my-bucket/v2/artifacts/hybridmi/run-1/train/model"
    with Serving(api) as host:
        code, _, _ = submit(
            capsys,
            host,
            "--only",
            "probe",
            "--pipeline-root",
            "s3://my-bucket/v2/artifacts",
            "--from",
            "dataset=s3://my-bucket/v2/artifacts/d",
            "--from",
            f"model={model}",
        )
    assert code == 0
    (run,) = runs_posted(api)
    assert run["runtime_config"]["parameters"]["model_uri"] == model
    assert run["runtime_config"]["pipeline_root"] == "s3://my-bucket/v2/artifacts"


def test_pull_secret__compiled_into_every_pod_of_the_submitted_package(capsys):
    api = FakeKFP()
    with Serving(api) as host:
        code, _, _ = submit(capsys, host, "--image-pull-secret", "regcred")
    assert code == 0
    (run,) = runs_posted(api)
    platform = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert platform and all(e["imagePullSecret"][0]["secretName"] == "regcred" for e in platform.values())
    assert "image_pull_secret" not in run["runtime_config"]["parameters"]


def test_driver_contract__a_run_the_driver_would_refuse_is_refused_before_contacting_the_cluster(capsys, monkeypatch):
    import pipelines.parameters

    monkeypatch.setattr(pipelines.parameters, "check_value", lambda name, value: value)  # only the driver's rules left
    code, _, err = main_submit_offline(capsys, ["--image", IMAGE, "--accelerator-count", "two"])
    line = one_error_line(err)
    assert code == 1 and "the KFP driver would refuse this run" in line and "ParseQuantity('two')" in line
    assert "cannot reach" not in line
