"""Prometheus metrics for hybridmi stages (the only library package that imports prometheus-client).

Usage in a stage::

    metrics = StageMetrics.from_config(cfg, stage="train")
    with metrics.track():
        train_hybrid(cfg, split, out_dir=out, callbacks=[metrics])
"""

from hybridmi.metrics.delivery import JOB, Pusher, serve_metrics
from hybridmi.metrics.families import FEATURES, PREFIX, build_families
from hybridmi.metrics.stage import EVAL_KEYS, StageMetrics

__all__ = ["EVAL_KEYS", "FEATURES", "JOB", "PREFIX", "Pusher", "StageMetrics", "build_families", "serve_metrics"]
