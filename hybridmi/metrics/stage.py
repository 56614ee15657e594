"""StageMetrics: the hybridmi metric families of one stage run in a private registry; a trainer callback."""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hybridmi.config import Config, MonitoringConfig
from hybridmi.errors import UsageError
from hybridmi.metrics.delivery import Pusher, gateway_auth, serve_metrics
from hybridmi.train.callbacks import StepMetrics

PREFIX = "hybridmi"
BASE_LABELS = ("run_id", "stage")
# Every family, by its name after PREFIX_: its help. Counters are exposed as <name>_total.
GAUGES = {
    "train_loss": "Total training loss, mean over the last report interval",
    "train_loss_term": "Each training loss term (e.g. recon, infonce), mean over the last report interval",
    "train_learning_rate": "Optimiser learning rate",
    "train_images_per_second": "Training throughput in images per second",
    "train_step": "Optimisation steps completed (resumed runs start at their checkpoint's step)",
    "train_epoch": "Passes over the training split completed (fractional)",
    "train_gpu_memory_bytes": "Peak CUDA memory allocated by the trainer (rank 0 when distributed)",
    "train_ranks": "Processes (DDP ranks) training together; throughput and loss are the global batch's",
    "train_rank_gpu_memory_bytes": "Peak CUDA memory allocated by each DDP rank",
    "eval_linear_accuracy_ratio": "Linear-probe test accuracy as a fraction in [0, 1]",
    "eval_mse": "Reconstruction mean squared error (the paper's unit)",
    "eval_psnr_decibels": "Reconstruction peak signal-to-noise ratio",
    "eval_fid": "Frechet inception distance of generated samples",
    "eval_recon_fid": "Frechet inception distance of decoded test images (the decoder's ceiling for generation)",
    "eval_fid_samples": "Number of generated samples the FID was computed on",
    "stage_start_timestamp_seconds": "Unix time the stage started",
    "stage_duration_seconds": "Wall time of the stage run, success or failure",
    "stage_last_success_timestamp_seconds": "Unix time the stage last finished successfully",
}
COUNTERS = {
    "train_steps": "Optimisation steps run by this process",
    "train_checkpoints": "Checkpoints written",
    "stage_failures": "Stage runs that raised",
}
EXTRA_LABELS = {
    "train_loss_term": ("term",),
    "train_rank_gpu_memory_bytes": ("rank",),
    "eval_linear_accuracy_ratio": ("feature",),
}
# Per-step wall time: from a few ms (tiny CPU models) to a minute (large batches on a slow node).
STEP_TIME_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# record_eval keys, as the evaluation stages name them in their metrics dicts: linear-probe accuracy per
# feature (fraction in [0, 1]), MSE (paper's unit), PSNR in dB, FID and the number of samples it used.
ACCURACY_PREFIX = "linear_acc_"
EVAL_KEYS = tuple(f"{ACCURACY_PREFIX}{f}" for f in ("y", "yhat", "z"))
EVAL_KEYS += ("mse", "psnr", "fid", "fid_num_samples", "recon_fid")
_EVAL_FAMILIES = {
    "mse": "eval_mse",
    "psnr": "eval_psnr_decibels",
    "fid": "eval_fid",
    "recon_fid": "eval_recon_fid",
    "fid_num_samples": "eval_fid_samples",
}

_STAGE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TERM = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_MAX_TERMS = 16  # loss terms come from code, not data; a larger set means a bug that would blow up cardinality


class StageMetrics:
    """Metrics of one stage run in a private registry, labelled {run_id, stage}; a training callback.
    A family's children are made on first use, so a stage exports only what it measured."""

    def __init__(
        self,
        *,
        run_id: str,
        stage: str,
        monitoring: MonitoringConfig = MonitoringConfig(),
        registry: CollectorRegistry | None = None,
        auth: tuple[str, str] | None = None,
        push_timeout_s: float = 2.0,
        final_push_timeout_s: float = 5.0,
    ) -> None:
        """Delivery (Pushgateway, /metrics, delete on finish) from ``monitoring``; ``auth``: Pushgateway basic auth."""
        if not run_id or len(run_id) > 128:
            raise UsageError(f"run_id {run_id!r} must be 1..128 characters")
        if not _STAGE.fullmatch(stage):
            raise UsageError(f"stage {stage!r} is not a lower-case identifier")
        if final_push_timeout_s <= 0:
            raise UsageError(f"final push timeout {final_push_timeout_s} s is not positive")
        self.run_id, self.stage, self.monitoring = run_id, stage, monitoring
        self.registry = registry if registry is not None else CollectorRegistry()
        self.families: dict[str, Any] = {
            name: kind(f"{PREFIX}_{name}", doc, BASE_LABELS + EXTRA_LABELS.get(name, ()), registry=self.registry)
            for kind, docs in ((Gauge, GAUGES), (Counter, COUNTERS))
            for name, doc in docs.items()
        }
        step_doc, name = "Wall time of one optimisation step", "train_step_duration_seconds"
        self.families[name] = Histogram(
            f"{PREFIX}_{name}", step_doc, BASE_LABELS, buckets=STEP_TIME_BUCKETS_S, registry=self.registry
        )
        self.labels = {"run_id": run_id, "stage": stage}
        self.pusher, self.final_push_timeout_s = None, final_push_timeout_s
        if url := monitoring.pushgateway_url:
            every, labels = monitoring.push_interval_s, self.labels
            self.pusher = Pusher(
                url, registry=self.registry, grouping_key=labels, interval_s=every, timeout_s=push_timeout_s, auth=auth
            )

    @classmethod
    def from_config(
        cls, cfg: Config, *, stage: str, run_id: str | None = None, env: Mapping[str, str] | None = None
    ) -> "StageMetrics":
        """From ``cfg.monitoring`` and the Pushgateway credentials in ``env`` (default: the process's);
        run_id: ``monitoring.run_id``, else ``run_id``, else ``<name>-<config hash>``."""
        mon = cfg.monitoring
        auth = gateway_auth(os.environ if env is None else env) if mon.pushgateway_url else None
        return cls(run_id=mon.run_id or run_id or f"{cfg.name}-{cfg.hash()}", stage=stage, monitoring=mon, auth=auth)

    def _child(self, name: str, **extra: str) -> Any:
        return self.families[name].labels(**self.labels, **extra)

    def on_step(self, metrics: StepMetrics) -> None:
        """Record one trainer report: loss, terms, lr, throughput, step/epoch, step times, GPU memory (per rank), ranks."""
        if len(metrics.terms) > _MAX_TERMS:
            raise ValueError(f"{len(metrics.terms)} loss terms exceed the bound of {_MAX_TERMS}")
        self._child("train_loss").set(metrics.loss)
        for term, value in metrics.terms.items():
            if not _TERM.fullmatch(term):
                raise ValueError(f"loss term name {term!r} is not an identifier")
            self._child("train_loss_term", term=term).set(value)
        self._child("train_learning_rate").set(metrics.lr)
        self._child("train_images_per_second").set(metrics.images_per_s)
        self._child("train_step").set(metrics.step)
        self._child("train_epoch").set(metrics.epoch)
        steps = max(int(metrics.steps_in_report), 0)
        self._child("train_steps").inc(steps)
        self._child("train_checkpoints")  # exported as 0 until the first checkpoint, so rate() works
        histogram = self._child("train_step_duration_seconds")
        for _ in range(steps if metrics.step_time_s > 0 else 0):
            histogram.observe(metrics.step_time_s)  # the report's mean, once per step it averages
        if metrics.gpu_mem_bytes is not None:
            self._child("train_gpu_memory_bytes").set(metrics.gpu_mem_bytes)
        self._child("train_ranks").set(metrics.ranks)
        for rank, peak in enumerate(metrics.rank_gpu_mem_bytes or ()):
            self._child("train_rank_gpu_memory_bytes", rank=str(rank)).set(peak)

    def on_checkpoint(self, path: Path, step: int) -> None:
        self._child("train_checkpoints").inc()

    def on_eval(self, name: str, value: float, step: int) -> None:
        """An evaluation the trainer ran; recorded when ``name`` is one of ``EVAL_KEYS``."""
        self.record_eval({name: value})

    def record_eval(self, values: Mapping[str, Any]) -> list[str]:
        """Set the evaluation gauges from a stage's metrics dict; returns the keys recorded."""
        recorded = []
        for key, raw in values.items():
            if key not in EVAL_KEYS:
                continue
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise ValueError(f"metric {key}={raw!r} is not a number")
            value = float(raw)
            if key.startswith(ACCURACY_PREFIX):
                if not (0.0 <= value <= 1.0 or math.isnan(value)):
                    raise ValueError(f"metric {key}={value} is not a fraction in [0, 1]")
                self._child("eval_linear_accuracy_ratio", feature=key.removeprefix(ACCURACY_PREFIX)).set(value)
            elif key == "fid_num_samples" and value < 0:
                raise ValueError(f"metric fid_num_samples={value} is negative")
            else:
                self._child(_EVAL_FAMILIES[key]).set(value)
            recorded.append(key)
        return recorded

    @contextlib.contextmanager
    def track(self) -> Iterator["StageMetrics"]:
        """Around a stage run: start delivery, record duration and success or failure, push once at the end."""
        failures = self._child("stage_failures")  # exported as 0 from the start
        mon = self.monitoring
        server = (
            serve_metrics(self.registry, port=mon.metrics_port, addr=mon.metrics_addr) if mon.metrics_port else None
        )
        start = time.monotonic()
        self._child("stage_start_timestamp_seconds").set(time.time())
        if self.pusher:
            self.pusher.start()
        try:
            yield self
        except BaseException:
            failures.inc()
            raise
        else:
            self._child("stage_last_success_timestamp_seconds").set(time.time())
        finally:
            self._child("stage_duration_seconds").set(time.monotonic() - start)
            if self.pusher:
                self.pusher.stop()
                pushed = self.pusher.push(timeout_s=self.final_push_timeout_s)
                if pushed and mon.delete_on_finish:
                    self.pusher.delete(timeout_s=self.final_push_timeout_s)
            if server is not None:
                server.shutdown()
                server.server_close()
