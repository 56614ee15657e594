"""Prometheus metrics for hybridmi stages (the only library package that imports prometheus-client)."""

from hybridmi.metrics.stage import EVAL_KEYS, StageMetrics

__all__ = ["EVAL_KEYS", "StageMetrics"]
