"""How long `submit --wait` waits by default (`run_time_bound_s` of the compiled packages in pipelines/compiled,
and of small hand-written specs with known answers), and what the wait says when the API never answers again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from urllib3.exceptions import MaxRetryError, NewConnectionError

from hybridmi.runners.connection import Auth, Backoff
from hybridmi.runners.submit import WAIT_MARGIN_S, run_time_bound_s, submit
from pipelines.settings import DEFAULT_TIMEOUTS_S, GPU_RETRIES

COMPILED = Path(__file__).resolve().parents[2] / "pipelines" / "compiled"
SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
HOUR = 3600
GPU_BACKOFF_S = sum(30 * 2**i for i in range(GPU_RETRIES))  # settings.request_gpu: 30 s doubling


def gpu_task_s(stage: str) -> float:
    return (1 + GPU_RETRIES) * DEFAULT_TIMEOUTS_S[stage] + GPU_BACKOFF_S


def test_run_time_bound__hybridmi_is_its_longest_chain_of_timeouts_with_retries():
    t = DEFAULT_TIMEOUTS_S
    # prepare → train → latents → ddim → sample → fid → report; the other branches are shorter
    chain = (
        t["prepare"]
        + gpu_task_s("train")
        + gpu_task_s("latents")
        + gpu_task_s("ddim")
        + gpu_task_s("sample")
        + gpu_task_s("fid")
        + t["report"]
    )
    bound = run_time_bound_s((COMPILED / "hybridmi.yaml").read_text())
    assert bound == chain and bound > 24 * HOUR


def test_run_time_bound__alpha_sweep_runs_its_points_in_waves_of_the_parallelism_limit():
    package = (COMPILED / "alpha_sweep.yaml").read_text()
    t = DEFAULT_TIMEOUTS_S
    point = gpu_task_s("train") + max(t["probe"], t["reconstruction"])
    around = t["prepare"] + t["control"]  # prepare before the loop; tradeoff after it
    assert run_time_bound_s(package) == around + 3 * point  # 5 default α values, 2 at a time
    assert run_time_bound_s(package, {"alphas": [0.1, 0.5]}) == around + point
    assert run_time_bound_s(package, {"alphas": "[0.1, 0.3, 0.5]"}) == around + 2 * point


def test_run_time_bound__multinode_counts_the_trainjob_task_s_longer_timeout():
    single = run_time_bound_s((COMPILED / "hybridmi.yaml").read_text())
    multi = run_time_bound_s((COMPILED / "hybridmi_multinode.yaml").read_text())
    assert multi > single


def package(tasks: dict, deadlines: dict, *, components: dict | None = None, defaults: dict | None = None) -> str:
    """A two-document package: executor ``exec-<name>`` per deadline; task ``t`` runs component ``comp-<t's component>``."""
    spec = {
        "pipelineInfo": {"name": "toy"},
        "root": {
            "dag": {"tasks": tasks},
            "inputDefinitions": {"parameters": {k: {"defaultValue": v} for k, v in (defaults or {}).items()}},
        },
        "components": {**{f"comp-{n}": {"executorLabel": f"exec-{n}"} for n in deadlines}, **(components or {})},
        "deploymentSpec": {"executors": {f"exec-{n}": {"container": {"image": "x"}} for n in deadlines}},
    }
    platform = {
        "platforms": {
            "kubernetes": {
                "deploymentSpec": {
                    "executors": {
                        f"exec-{n}": {"activeDeadlineSeconds": str(s)} for n, s in deadlines.items() if s is not None
                    }
                }
            }
        }
    }
    return yaml.safe_dump_all([spec, platform])


def task(component: str, *after: str, **extra) -> dict:
    return {
        "componentRef": {"name": f"comp-{component}"},
        **({"dependentTasks": list(after)} if after else {}),
        **extra,
    }


def test_run_time_bound__a_diamond_takes_its_longer_branch():
    tasks = {"a": task("a"), "b": task("b", "a"), "c": task("c", "a"), "d": task("d", "b", "c")}
    assert run_time_bound_s(package(tasks, {"a": 10, "b": 100, "c": 7, "d": 1})) == 111


def test_run_time_bound__retries_repeat_the_timeout_and_add_capped_backoff():
    retry = {"maxRetryCount": 3, "backoffDuration": "30s", "backoffFactor": 2.0, "backoffMaxDuration": "50s"}
    assert run_time_bound_s(package({"a": task("a", retryPolicy=retry)}, {"a": 100})) == 4 * 100 + 30 + 50 + 50


def test_run_time_bound__a_loop_of_a_nested_pipeline_over_a_pipeline_input():
    body = {"comp-body": {"dag": {"tasks": {"x": task("x"), "y": task("y", "x")}}}}
    loop = task(
        "body",
        parameterIterator={"items": {"inputParameter": "pipelinechannel--items"}},
        inputs={"parameters": {"pipelinechannel--items": {"componentInputParameter": "items"}}},
        iteratorPolicy={"parallelismLimit": 3},
    )
    spec = package({"loop": loop}, {"x": 5, "y": 6}, components=body, defaults={"items": list(range(7))})
    assert run_time_bound_s(spec) == 3 * 11  # 7 items, 3 at a time
    assert run_time_bound_s(spec, {"items": []}) == 0


def test_run_time_bound__refuses_a_task_without_timeout_or_a_loop_over_a_task_output():
    with pytest.raises(ValueError, match="executor exec-a has no timeout"):
        run_time_bound_s(package({"a": task("a")}, {"a": None}))
    loop = task(
        "a",
        parameterIterator={"items": {"inputParameter": "pipelinechannel--xs"}},
        inputs={"parameters": {"pipelinechannel--xs": {"taskOutputParameter": {"producerTask": "b"}}}},
    )
    with pytest.raises(ValueError, match="items of loop loop are not known before the run"):
        run_time_bound_s(package({"loop": loop}, {"a": 1}))


class UnreachableAfterSubmission:
    """A kfp.Client stand-in: the run is accepted, then every poll fails as a dead port-forward makes kfp.Client fail."""

    def __init__(self, *args, **kwargs) -> None:
        self.polls = 0

    def create_run_from_pipeline_package(self, *args, **kwargs):
        return SimpleNamespace(run_id="run-1")

    def get_run(self, run_id: str):
        self.polls += 1
        raise MaxRetryError(None, f"/apis/v2beta1/runs/{run_id}", NewConnectionError(None, "Connection refused"))


def test_submit_wait__unreachable_to_the_timeout_names_the_run_and_its_link():
    with pytest.raises(TimeoutError) as raised:
        submit(
            "http://127.0.0.1:9",
            SMOKE,
            wait=True,
            timeout_s=0.2,
            poll_s=0.01,
            backoff=Backoff(0.01, 0.05),
            auth=Auth(),
            ui_url="https://kf.example.com/pipeline",
            client_factory=UnreachableAfterSubmission,
        )
    message = str(raised.value)
    assert message.startswith("run run-1: the API has not answered for the last ")
    assert "(NewConnectionError: None: Connection refused); its state was never read" in message
    assert message.endswith("; it may still be going on: https://kf.example.com/pipeline/#/runs/details/run-1")


def test_submit_wait__by_default_waits_for_the_package_bound_plus_the_margin(caplog):
    class Succeeds(UnreachableAfterSubmission):
        def get_run(self, run_id: str):
            return SimpleNamespace(state="SUCCEEDED", created_at=None, finished_at=None, error=None)

    caplog.set_level("INFO", logger="hybridmi")
    submitted = submit("http://127.0.0.1:9", SMOKE, wait=True, auth=Auth(), client_factory=Succeeds)
    assert submitted.state == "SUCCEEDED"
    minutes, seconds = divmod(round(run_time_bound_s((COMPILED / "hybridmi.yaml").read_text()) + WAIT_MARGIN_S), 60)
    assert f"waiting up to {minutes // 60}h{minutes % 60:02d}m{seconds:02d}s" in caplog.text
