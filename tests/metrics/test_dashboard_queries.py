"""The Grafana dashboard against a real Prometheus fed by a real Pushgateway: every panel's query returns data."""

from __future__ import annotations

import dataclasses
import json
import math
import resource
import time
import urllib.parse
from pathlib import Path

import pytest
import torch
from promstack import http_get

from hybridmi.config import MonitoringConfig as Mon
from hybridmi.config import load_config
from hybridmi.data.prepare import prepare_dataset
from hybridmi.data.prepared import load_dataset
from hybridmi.metrics import StageMetrics
from hybridmi.stages.common import report_eval
from hybridmi.train.callbacks import StepMetrics
from hybridmi.train.hybrid import train_hybrid

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "k8s" / "monitoring" / "grafana" / "hybridmi-dashboard.json"
RUN = "dash-run"
RATE_INTERVAL = "1m"  # Grafana's $__rate_interval for a dashboard showing the last hour or more
EVAL = {  # what the evaluation stages hand to report_eval, in their own key names
    "probe": {
        "linear_acc_y": 0.41,
        "linear_acc_yhat": 0.36,
        "linear_acc_z": 0.47,
        "knn_acc_z": 0.44,
        "linear_acc": 0.47,
    },
    "reconstruction": {"mse": 12.5, "psnr": 19.9, "num_images": 500.0},
    "fid": {"fid": 87.0, "fid_num_samples": 200.0, "fid_reference_count": 500.0},
}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def data_panels(dash: dict) -> list[dict]:
    return [p for p in dash["panels"] if p["type"] != "row"]


def substitute(expr: str) -> str:
    """Grafana's variables as the dashboard would set them for this run."""
    out = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$run_id", RUN)
    assert "$" not in out, f"unsubstituted variable in {expr}"
    return out


def test_dashboard__panels_are_well_formed():
    dash = dashboard()
    panels = data_panels(dash)
    assert dash["uid"] == "hybridmi" and len(panels) >= 10
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "run_id"}
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert "hybridmi_" in target["expr"] and 'run_id=~"$run_id"' in target["expr"], panel["title"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("loss", "throughput", "gpu memory", "accuracy", "reconstruction", "fid", "duration", "failures"):
        assert topic in titles


class StandInGPU:
    """CPU runs report no GPU memory; stand in the process's peak RSS so the GPU panel's query is exercised."""

    def __init__(self, inner: StageMetrics) -> None:
        self.inner = inner

    def on_step(self, m: StepMetrics) -> None:
        if m.gpu_mem_bytes is None and not torch.cuda.is_available():
            m = dataclasses.replace(m, gpu_mem_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        self.inner.on_step(m)

    def on_checkpoint(self, path: Path, step: int) -> None:
        self.inner.on_checkpoint(path, step)


class Paced:
    """Hold each step long enough for a push and a scrape to land between steps, however fast (or busy)
    the machine: rate() panels need two scrapes that saw different counts."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step(self, m: StepMetrics) -> None:
        time.sleep(self.seconds)


# configs/smoke.yaml made smaller still: 4 optimisation steps, a report after each, two checkpoints.
SMOKE_OVERRIDES = [
    "data.synthetic_train=64",
    "data.synthetic_test=20",
    "train.epochs=1",
    "train.batch_size=16",
    "objective.queue_size=64",
    "train.log_every=1",
    "train.checkpoint_every=2",
]


def smoke_training(tmp_path: Path, callbacks: list) -> None:
    """The real hybrid trainer on the smoke preset's synthetic data."""
    cfg = load_config(
        ROOT / "configs" / "smoke.yaml", overrides=SMOKE_OVERRIDES + [f"data.cache_dir={tmp_path / 'cache'}"]
    )
    prepare_dataset(cfg.data, tmp_path / "data")
    train_split, _ = load_dataset(tmp_path / "data")
    train_hybrid(cfg, train_split, out_dir=tmp_path / "checkpoints", callbacks=callbacks)


def prom_query(prometheus, path: str, **params: str) -> dict:
    body = json.loads(http_get(f"{prometheus.url}{path}?{urllib.parse.urlencode(params)}", timeout=10))
    assert body["status"] == "success", body
    return body["data"]


def finite_values(result: list[dict]) -> list[float]:
    values = [float(v) for series in result for _, v in series.get("values", [series.get("value", [0, "NaN"])])]
    return [v for v in values if math.isfinite(v)]


@pytest.mark.services
def test_dashboard__every_panel_query_returns_data(prometheus, pushgateway, tmp_path):
    t0 = time.time()
    url, interval = pushgateway.address, 0.1
    train = StageMetrics(run_id=RUN, stage="train", monitoring=Mon(pushgateway_url=url, push_interval_s=interval))
    with train.track():
        smoke_training(tmp_path, [StandInGPU(train), Paced(1.0)])
    for stage, values in EVAL.items():
        metrics = StageMetrics(run_id=RUN, stage=stage, monitoring=Mon(pushgateway_url=url, push_interval_s=interval))
        with metrics.track():
            report_eval([metrics], values)
    failing = StageMetrics(run_id=RUN, stage="figures", monitoring=Mon(pushgateway_url=url))
    with pytest.raises(OSError):
        with failing.track():
            raise OSError("disk full")

    def scraped_everything() -> bool:
        done = prom_query(
            prometheus, "/api/v1/query", query=f'hybridmi_stage_failures_total{{run_id="{RUN}",stage="figures"}}'
        )
        return bool(done["result"])

    deadline = time.monotonic() + 15
    while not scraped_everything():
        assert time.monotonic() < deadline, "Prometheus never scraped the last push"
        time.sleep(0.25)
    time.sleep(1.5)  # one more scrape so instant queries at 'now' see every group
    end = time.time()

    runs = prom_query(
        prometheus, "/api/v1/label/run_id/values", **{"match[]": "hybridmi_stage_start_timestamp_seconds"}
    )
    assert RUN in runs
    empty = []
    for panel in data_panels(dashboard()):
        for target in panel["targets"]:
            expr = substitute(target["expr"])
            if target.get("instant"):
                result = prom_query(prometheus, "/api/v1/query", query=expr, time=str(end))["result"]
            else:
                result = prom_query(
                    prometheus, "/api/v1/query_range", query=expr, start=str(t0), end=str(end), step="0.5"
                )["result"]
            if not finite_values(result):
                empty.append(f"{panel['title']}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)

    accuracy = next(p for p in data_panels(dashboard()) if p["title"] == "Linear-probe accuracy")
    result = prom_query(prometheus, "/api/v1/query", query=substitute(accuracy["targets"][0]["expr"]), time=str(end))[
        "result"
    ]
    assert {r["metric"]["feature"]: float(r["value"][1]) for r in result} == {"y": 0.41, "yhat": 0.36, "z": 0.47}
    failures = next(p for p in data_panels(dashboard()) if p["title"] == "Stage failures")
    result = prom_query(prometheus, "/api/v1/query", query=substitute(failures["targets"][0]["expr"]), time=str(end))[
        "result"
    ]
    assert {r["metric"]["stage"]: float(r["value"][1]) for r in result} == {
        "train": 0.0,
        "probe": 0.0,
        "reconstruction": 0.0,
        "fid": 0.0,
        "figures": 1.0,
    }
