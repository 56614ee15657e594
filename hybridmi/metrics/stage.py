"""StageMetrics: the prometheus-client side of one stage run, plugged into the trainers as a callback."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Iterator, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry

from hybridmi.config import Config
from hybridmi.metrics.delivery import JOB, Pusher, serve_metrics
from hybridmi.metrics.families import FEATURES, build_families
from hybridmi.train.callbacks import StepMetrics

log = logging.getLogger(__name__)

# record_eval keys, as the evaluation stages name them in their metrics dicts: linear-probe accuracy per
# feature (fraction in [0, 1]), MSE (paper's unit), PSNR in dB, FID and the number of samples it used.
ACCURACY_PREFIX = "linear_acc_"
EVAL_KEYS = tuple(f"{ACCURACY_PREFIX}{f}" for f in FEATURES) + ("mse", "psnr", "fid", "fid_num_samples")

_STAGE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TERM = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_MAX_TERMS = 16  # loss terms come from code, not data; a larger set means a bug that would blow up cardinality


def _finite_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"metric {key}={value!r} is not a number")
    return float(value)


class StageMetrics:
    """Metrics of one stage run in a private registry, labelled {run_id, stage}; a TrainCallback.

    Delivery is off unless configured: ``pushgateway_url`` pushes the registry every ``push_interval_s``
    from a daemon thread and once when ``track()`` ends (grouping key {run_id, stage}, job "hybridmi"),
    deleting the group afterwards when ``delete_on_finish``; ``metrics_port`` > 0 serves /metrics on
    ``metrics_addr`` while ``track()`` runs.
    """

    def __init__(
        self,
        *,
        run_id: str,
        stage: str,
        registry: CollectorRegistry | None = None,
        pushgateway_url: str | None = None,
        push_interval_s: float = 15.0,
        push_timeout_s: float = 2.0,
        final_push_timeout_s: float = 5.0,
        delete_on_finish: bool = False,
        metrics_port: int = 0,
        metrics_addr: str = "0.0.0.0",
    ) -> None:
        if not run_id or len(run_id) > 128:
            raise ValueError(f"run_id {run_id!r} must be 1..128 characters")
        if not _STAGE.fullmatch(stage):
            raise ValueError(f"stage {stage!r} is not a lower-case identifier")
        if final_push_timeout_s <= 0:
            raise ValueError(f"final push timeout {final_push_timeout_s} s is not positive")
        self.run_id = run_id
        self.stage = stage
        self.registry = registry if registry is not None else CollectorRegistry()
        self.families = build_families(self.registry)
        self.labels = {"run_id": run_id, "stage": stage}
        self.pusher = (
            Pusher(
                pushgateway_url,
                registry=self.registry,
                grouping_key=self.labels,
                job=JOB,
                interval_s=push_interval_s,
                timeout_s=push_timeout_s,
            )
            if pushgateway_url
            else None
        )
        self.final_push_timeout_s = final_push_timeout_s
        self.delete_on_finish = delete_on_finish
        self.metrics_port = metrics_port
        self.metrics_addr = metrics_addr

    @classmethod
    def from_config(
        cls, cfg: Config, *, stage: str, registry: CollectorRegistry | None = None, run_id: str | None = None
    ) -> "StageMetrics":
        """Build from a ``Config``: its ``monitoring`` section; run_id: ``monitoring.run_id``, else ``run_id``, else ``<name>-<config hash>``."""
        mon = cfg.monitoring
        return cls(
            run_id=mon.run_id or run_id or f"{cfg.name}-{cfg.hash()}",
            stage=stage,
            registry=registry,
            pushgateway_url=mon.pushgateway_url,
            push_interval_s=mon.push_interval_s,
            delete_on_finish=mon.delete_on_finish,
            metrics_port=mon.metrics_port,
            metrics_addr=mon.metrics_addr,
        )

    def _child(self, family: Any, **extra: str) -> Any:
        return family.labels(**self.labels, **extra)

    # TrainCallback -------------------------------------------------------------------------------
    def on_step(self, metrics: StepMetrics) -> None:
        """Record one trainer report: loss, terms, lr, throughput, step/epoch, step times, GPU memory (per rank), ranks."""
        f = self.families
        if len(metrics.terms) > _MAX_TERMS:
            raise ValueError(f"{len(metrics.terms)} loss terms exceed the bound of {_MAX_TERMS}")
        self._child(f.train_loss).set(metrics.loss)
        for term, value in metrics.terms.items():
            if not _TERM.fullmatch(term):
                raise ValueError(f"loss term name {term!r} is not an identifier")
            self._child(f.train_loss_term, term=term).set(value)
        self._child(f.train_learning_rate).set(metrics.lr)
        self._child(f.train_images_per_second).set(metrics.images_per_s)
        self._child(f.train_step).set(metrics.step)
        self._child(f.train_epoch).set(metrics.epoch)
        steps = max(int(metrics.steps_in_report), 0)
        self._child(f.train_steps).inc(steps)
        self._child(f.train_checkpoints)  # exported as 0 until the first checkpoint, so rate() works
        histogram = self._child(f.train_step_duration)
        for _ in range(steps if metrics.step_time_s > 0 else 0):
            histogram.observe(metrics.step_time_s)  # the report's mean, once per step it averages
        if metrics.gpu_mem_bytes is not None:
            self._child(f.train_gpu_memory).set(metrics.gpu_mem_bytes)
        self._child(f.train_ranks).set(metrics.ranks)
        for rank, peak in enumerate(metrics.rank_gpu_mem_bytes or ()):
            self._child(f.train_rank_gpu_memory, rank=str(rank)).set(peak)

    def on_checkpoint(self, path: Path, step: int) -> None:
        """Count a written checkpoint."""
        self._child(self.families.train_checkpoints).inc()

    def on_eval(self, name: str, value: float, step: int) -> None:
        """An evaluation the trainer ran; recorded when ``name`` is one of ``EVAL_KEYS``."""
        self.record_eval({name: value})

    # Evaluation stages -----------------------------------------------------------------------------
    def record_eval(self, values: Mapping[str, Any]) -> list[str]:
        """Set the evaluation gauges from a stage's metrics dict; returns the keys recorded.

        Known keys (``EVAL_KEYS``): ``linear_acc_{y,yhat,z}`` (fraction in [0, 1]), ``mse``,
        ``psnr`` (dB), ``fid``, ``fid_num_samples``; other keys (a stage's extra numbers) are left out.
        """
        f = self.families
        recorded = []
        for key, raw in values.items():
            if key not in EVAL_KEYS:
                continue
            value = _finite_number(key, raw)
            if key.startswith(ACCURACY_PREFIX):
                if not (0.0 <= value <= 1.0 or math.isnan(value)):
                    raise ValueError(f"metric {key}={value} is not a fraction in [0, 1]")
                self._child(f.eval_linear_accuracy, feature=key.removeprefix(ACCURACY_PREFIX)).set(value)
            elif key == "fid_num_samples" and value < 0:
                raise ValueError(f"metric fid_num_samples={value} is negative")
            else:
                family = {
                    "mse": f.eval_mse,
                    "psnr": f.eval_psnr,
                    "fid": f.eval_fid,
                    "fid_num_samples": f.eval_fid_samples,
                }[key]
                self._child(family).set(value)
            recorded.append(key)
        return recorded

    # Stage lifetime --------------------------------------------------------------------------------
    def push(self) -> bool:
        """Push now (bounded by the push timeout); False when pushing is off or failed."""
        return self.pusher.push() if self.pusher else False

    @contextlib.contextmanager
    def track(self) -> Iterator["StageMetrics"]:
        """Around a stage run: start delivery, record duration and success or failure, push once at the end.

        The stage's exception propagates unchanged; monitoring problems never replace it.
        """
        f = self.families
        failures = self._child(f.stage_failures)  # exported as 0 from the start
        server: WSGIServer | None = None
        if self.metrics_port:
            server = serve_metrics(self.registry, port=self.metrics_port, addr=self.metrics_addr)
        start_wall, start = time.time(), time.monotonic()
        self._child(f.stage_start).set(start_wall)
        if self.pusher:
            self.pusher.start()
        try:
            yield self
        except BaseException:
            failures.inc()
            raise
        else:
            self._child(f.stage_last_success).set(time.time())
        finally:
            self._child(f.stage_duration).set(time.monotonic() - start)
            self._finish(server)

    def _finish(self, server: WSGIServer | None) -> None:
        if self.pusher:
            self.pusher.stop()
            pushed = self.pusher.push(timeout_s=self.final_push_timeout_s)
            if pushed and self.delete_on_finish:
                self.pusher.delete(timeout_s=self.final_push_timeout_s)
        if server is not None:
            server.shutdown()
            server.server_close()
