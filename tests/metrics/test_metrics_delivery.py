"""Delivery: pushes reach a real Pushgateway; a dead gateway costs one warning and no time; /metrics serves."""

from __future__ import annotations

import logging
import time
import urllib.error

import pytest
from prometheus_client.parser import text_string_to_metric_families
from promstack import free_port, http_get

from hybridmi.config import MonitoringConfig as Mon
from hybridmi.metrics import StageMetrics
from hybridmi.train.callbacks import StepMetrics

STEP = StepMetrics(
    stage="hybrid",
    step=7,
    epoch=0.25,
    loss=1.5,
    terms={"recon": 2.0},
    lr=0.01,
    images_per_s=100.0,
    step_time_s=0.01,
    steps_in_report=7,
)


def gateway_samples(gateway_url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample the gateway exposes, keyed by (name, labels)."""
    text = http_get(f"{gateway_url}/metrics").decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def pushed(gateway_url: str, name: str, run_id: str, stage: str) -> float | None:
    key = frozenset({"job": "hybridmi", "instance": "", "run_id": run_id, "stage": stage}.items())
    return gateway_samples(gateway_url).get((name, key))


def wait_for(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.services
def test_track__pushes_periodically_and_once_at_the_end(pushgateway):
    m = StageMetrics(
        run_id="run-a", stage="train", monitoring=Mon(pushgateway_url=pushgateway.address, push_interval_s=0.1)
    )
    with m.track():
        m.on_step(STEP)
        assert wait_for(lambda: pushed(pushgateway.url, "hybridmi_train_loss", "run-a", "train") == 1.5)
        assert pushed(pushgateway.url, "hybridmi_stage_last_success_timestamp_seconds", "run-a", "train") is None
        m.on_step(StepMetrics(stage="hybrid", step=9, epoch=0.3, loss=0.5, steps_in_report=2))
        m.pusher.interval_s = 3600.0  # only the final push can deliver what follows
        time.sleep(0.2)
    assert pushed(pushgateway.url, "hybridmi_train_loss", "run-a", "train") == 0.5
    assert pushed(pushgateway.url, "hybridmi_train_steps_total", "run-a", "train") == 9
    assert pushed(pushgateway.url, "hybridmi_stage_last_success_timestamp_seconds", "run-a", "train") > 0
    assert pushed(pushgateway.url, "hybridmi_stage_failures_total", "run-a", "train") == 0


@pytest.mark.services
def test_track__failure_is_pushed_and_groups_stay_apart(pushgateway):
    ok = StageMetrics(run_id="run-b", stage="probe", monitoring=Mon(pushgateway_url=pushgateway.url))
    with ok.track():
        ok.record_eval({"linear_acc_z": 0.5})
    bad = StageMetrics(run_id="run-b", stage="fid", monitoring=Mon(pushgateway_url=pushgateway.url))
    with pytest.raises(RuntimeError, match="out of memory"):
        with bad.track():
            raise RuntimeError("out of memory")
    assert pushed(pushgateway.url, "hybridmi_stage_failures_total", "run-b", "fid") == 1
    assert pushed(pushgateway.url, "hybridmi_stage_failures_total", "run-b", "probe") == 0
    key = frozenset({"job": "hybridmi", "instance": "", "run_id": "run-b", "stage": "probe", "feature": "z"}.items())
    assert gateway_samples(pushgateway.url)[("hybridmi_eval_linear_accuracy_ratio", key)] == 0.5


@pytest.mark.services
def test_delete_on_finish__removes_the_group(pushgateway):
    keep = StageMetrics(run_id="run-c", stage="train", monitoring=Mon(pushgateway_url=pushgateway.address))
    gone = StageMetrics(
        run_id="run-c", stage="ddim", monitoring=Mon(pushgateway_url=pushgateway.address, delete_on_finish=True)
    )
    for m in (keep, gone):
        with m.track():
            m.on_step(STEP)
    assert pushed(pushgateway.url, "hybridmi_train_loss", "run-c", "train") == 1.5
    assert pushed(pushgateway.url, "hybridmi_train_loss", "run-c", "ddim") is None


def test_unreachable_gateway__one_warning_and_no_slowdown(caplog):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    m = StageMetrics(run_id="run-d", stage="train", monitoring=Mon(pushgateway_url=dead, push_interval_s=0.02))
    slowest = 0.0
    with caplog.at_level(logging.WARNING, logger="hybridmi.metrics"):
        start = time.monotonic()
        with m.track():
            while time.monotonic() - start < 0.5:
                t0 = time.perf_counter()
                m.on_step(STEP)
                slowest = max(slowest, time.perf_counter() - t0)
                time.sleep(0.005)
        total = time.monotonic() - start
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and dead in warnings[0].getMessage()
    assert m.pusher.pushes_failed >= 5 and m.pusher.pushes_ok == 0
    assert slowest < 0.05
    assert total < 1.5


def test_unresponsive_gateway__final_push_is_bounded():
    import socket

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = "127.0.0.1:%d" % listener.getsockname()[1]
        m = StageMetrics(
            run_id="run-e",
            stage="train",
            monitoring=Mon(pushgateway_url=url, push_interval_s=60),
            push_timeout_s=0.2,
            final_push_timeout_s=0.3,
        )
        start = time.monotonic()
        with m.track():
            m.on_step(STEP)
        elapsed = time.monotonic() - start
    assert elapsed < 2.0
    assert m.pusher.pushes_failed == 1


def test_metrics_port__serves_the_registry_while_tracking():
    port = free_port()
    m = StageMetrics(run_id="run-f", stage="train", monitoring=Mon(metrics_port=port, metrics_addr="127.0.0.1"))
    with m.track():
        m.on_step(STEP)
        text = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    assert 'hybridmi_train_loss{run_id="run-f",stage="train"} 1.5' in text
    with pytest.raises(urllib.error.URLError):
        http_get(f"http://127.0.0.1:{port}/metrics", timeout=0.5)


def test_metrics_port__busy_port_is_a_clear_error():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        m = StageMetrics(run_id="run-g", stage="train", monitoring=Mon(metrics_port=port, metrics_addr="127.0.0.1"))
        with pytest.raises(ValueError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            with m.track():
                pass
