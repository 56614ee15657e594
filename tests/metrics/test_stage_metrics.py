"""StageMetrics records what the trainers and evaluation stages report, in its own registry."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from hybridmi.config import MonitoringConfig, config_from_dict
from hybridmi.metrics import EVAL_KEYS, StageMetrics
from hybridmi.train.callbacks import CallbackList, StepMetrics

LABELS = {"run_id": "run-1", "stage": "train"}


def value(m: StageMetrics, name: str, **extra: str) -> float | None:
    return m.registry.get_sample_value(name, {**LABELS, **extra})


def report(step: int, *, steps: int = 5, step_time_s: float = 0.02, gpu: int | None = None) -> StepMetrics:
    return StepMetrics(
        stage="hybrid",
        step=step,
        epoch=step / 10,
        loss=2.5 - step / 100,
        terms={"recon": 4.0, "infonce": 1.0},
        lr=1e-3,
        images_per_s=640.0,
        step_time_s=step_time_s,
        steps_in_report=steps,
        gpu_mem_bytes=gpu,
    )


def test_on_step__sets_training_gauges():
    m = StageMetrics(**LABELS)
    m.on_step(report(10))
    assert value(m, "hybridmi_train_loss") == pytest.approx(2.4)
    assert value(m, "hybridmi_train_loss_term", term="recon") == 4.0
    assert value(m, "hybridmi_train_loss_term", term="infonce") == 1.0
    assert value(m, "hybridmi_train_learning_rate") == 1e-3
    assert value(m, "hybridmi_train_images_per_second") == 640.0
    assert value(m, "hybridmi_train_step") == 10
    assert value(m, "hybridmi_train_epoch") == 1.0


def test_on_step__counts_every_step_in_counter_and_histogram():
    m = StageMetrics(**LABELS)
    m.on_step(report(5, steps=5, step_time_s=0.02))
    m.on_step(report(8, steps=3, step_time_s=0.3))
    assert value(m, "hybridmi_train_steps_total") == 8
    assert value(m, "hybridmi_train_step_duration_seconds_count") == 8
    assert value(m, "hybridmi_train_step_duration_seconds_sum") == pytest.approx(5 * 0.02 + 3 * 0.3)
    assert value(m, "hybridmi_train_step_duration_seconds_bucket", le="0.025") == 5
    assert value(m, "hybridmi_train_step_duration_seconds_bucket", le="0.25") == 5
    assert value(m, "hybridmi_train_step_duration_seconds_bucket", le="0.5") == 8


def test_on_step__gpu_memory_only_when_reported():
    m = StageMetrics(**LABELS)
    m.on_step(report(1))
    assert value(m, "hybridmi_train_gpu_memory_bytes") is None
    m.on_step(report(2, gpu=3 * 2**30))
    assert value(m, "hybridmi_train_gpu_memory_bytes") == 3 * 2**30


def test_on_step__ranks_and_each_ranks_gpu_memory_labelled_by_rank():
    m = StageMetrics(**LABELS)
    m.on_step(report(1))
    assert value(m, "hybridmi_train_ranks") == 1
    assert value(m, "hybridmi_train_rank_gpu_memory_bytes", rank="0") is None
    m.on_step(dataclasses.replace(report(2, gpu=5), ranks=2, rank_gpu_mem_bytes=[5, 7]))
    assert value(m, "hybridmi_train_ranks") == 2
    assert [value(m, "hybridmi_train_rank_gpu_memory_bytes", rank=r) for r in ("0", "1")] == [5, 7]


def test_on_step__rejects_unbounded_term_names():
    m = StageMetrics(**LABELS)
    with pytest.raises(ValueError, match="loss term name 'recon loss'"):
        m.on_step(StepMetrics(stage="hybrid", step=1, epoch=0.0, loss=1.0, terms={"recon loss": 1.0}))
    with pytest.raises(ValueError, match="17 loss terms"):
        m.on_step(StepMetrics(stage="hybrid", step=1, epoch=0.0, loss=1.0, terms={f"t{i}": 1.0 for i in range(17)}))


def test_on_checkpoint__counts_checkpoints_from_zero():
    m = StageMetrics(**LABELS)
    m.on_step(report(1))
    assert value(m, "hybridmi_train_checkpoints_total") == 0
    m.on_checkpoint(Path("ckpt-50.pt"), 50)
    m.on_checkpoint(Path("ckpt-100.pt"), 100)
    assert value(m, "hybridmi_train_checkpoints_total") == 2


def test_record_eval__sets_known_keys_and_leaves_out_others():
    m = StageMetrics(run_id="run-1", stage="probe")
    recorded = m.record_eval(
        {
            "linear_acc_y": 0.41,
            "linear_acc_yhat": 0.35,
            "linear_acc_z": 0.47,
            "knn_acc_z": 0.44,
            "mse": 12.5,
            "psnr": 19.9,
            "fid": 87.0,
            "fid_num_samples": 200,
            "recon_fid": 31.5,
        }
    )
    assert sorted(recorded) == sorted(EVAL_KEYS)
    get = lambda name, **kw: m.registry.get_sample_value(name, {"run_id": "run-1", "stage": "probe", **kw})  # noqa: E731
    assert get("hybridmi_eval_linear_accuracy_ratio", feature="y") == 0.41
    assert get("hybridmi_eval_linear_accuracy_ratio", feature="yhat") == 0.35
    assert get("hybridmi_eval_linear_accuracy_ratio", feature="z") == 0.47
    assert get("hybridmi_eval_mse") == 12.5
    assert get("hybridmi_eval_psnr_decibels") == 19.9
    assert get("hybridmi_eval_fid") == 87.0
    assert get("hybridmi_eval_fid_samples") == 200
    assert get("hybridmi_eval_recon_fid") == 31.5
    assert not [s for fam in m.registry.collect() for s in fam.samples if "knn" in s.name]


def test_record_eval__rejects_percentages_and_non_numbers():
    m = StageMetrics(**LABELS)
    with pytest.raises(ValueError, match="linear_acc_z=87.5 is not a fraction"):
        m.record_eval({"linear_acc_z": 87.5})
    with pytest.raises(ValueError, match="mse='low' is not a number"):
        m.record_eval({"mse": "low"})


def test_on_eval__goes_through_the_callback_fan_out():
    m = StageMetrics(**LABELS)
    CallbackList([m]).on_eval("fid", 42.0, 7)
    assert value(m, "hybridmi_eval_fid") == 42.0


def test_track__success_records_duration_and_success_time():
    m = StageMetrics(**LABELS)
    with m.track():
        pass
    assert value(m, "hybridmi_stage_duration_seconds") >= 0
    assert value(m, "hybridmi_stage_last_success_timestamp_seconds") >= value(
        m, "hybridmi_stage_start_timestamp_seconds"
    )
    assert value(m, "hybridmi_stage_failures_total") == 0


def test_track__failure_counts_and_reraises_the_stage_error():
    m = StageMetrics(**LABELS)
    with pytest.raises(KeyError, match="boom"):
        with m.track():
            raise KeyError("boom")
    assert value(m, "hybridmi_stage_failures_total") == 1
    assert value(m, "hybridmi_stage_last_success_timestamp_seconds") is None
    assert value(m, "hybridmi_stage_duration_seconds") >= 0


def test_registry__private_per_stage_and_injectable():
    injected = CollectorRegistry()
    a = StageMetrics(run_id="run-1", stage="train", registry=injected)
    b = StageMetrics(run_id="run-1", stage="ddim")
    a.on_step(report(3))
    assert a.registry is injected
    assert b.registry.get_sample_value("hybridmi_train_loss", {"run_id": "run-1", "stage": "ddim"}) is None
    assert REGISTRY.get_sample_value("hybridmi_train_loss", LABELS) is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"run_id": "", "stage": "train"}, "run_id ''"),
        ({"run_id": "r", "stage": "Train Stage"}, "stage 'Train Stage'"),
        ({"run_id": "r", "stage": "train", "final_push_timeout_s": 0}, "final push timeout 0"),
    ],
)
def test_constructor__rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StageMetrics(**kwargs)


def test_from_config__uses_monitoring_section_and_derives_run_id():
    cfg = config_from_dict(
        {"name": "smoke", "monitoring": {"pushgateway_url": "pg:9091", "push_interval_s": 3, "delete_on_finish": True}}
    )
    m = StageMetrics.from_config(cfg, stage="train")
    assert m.run_id == f"smoke-{cfg.hash()}"
    assert (m.pusher.url, m.pusher.interval_s, m.monitoring.delete_on_finish) == ("pg:9091", 3.0, True)
    named = StageMetrics.from_config(config_from_dict({"monitoring": {"run_id": "sweep-a0.5"}}), stage="probe")
    assert (named.run_id, named.pusher, named.monitoring.metrics_port) == ("sweep-a0.5", None, 0)


def test_core__imports_no_monitoring_library():
    code = (
        "import sys, hybridmi.train.hybrid, hybridmi.train.callbacks, hybridmi.config, hybridmi.stages.train;"
        "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_push_interval__must_be_positive():
    with pytest.raises(ValueError, match="push_interval_s"):
        StageMetrics(
            run_id="r", stage="train", monitoring=MonitoringConfig(pushgateway_url="pg:9091", push_interval_s=-1)
        )
