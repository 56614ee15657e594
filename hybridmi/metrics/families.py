"""The hybridmi metric families, registered on one (private) registry.

Conventions: one ``hybridmi_`` prefix, base units in the name (``_seconds``, ``_bytes``), ``_total``
for counters, and only bounded labels: ``run_id`` and ``stage`` on everything, plus ``term`` (a loss
term name from the trainer's code), ``feature`` (``y``, ``yhat`` or ``z``) and ``rank`` (a DDP rank,
at most the number of GPUs of the job).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "hybridmi"
BASE_LABELS = ("run_id", "stage")
FEATURES = ("y", "yhat", "z")

# Per-step wall time: from a few ms (tiny CPU models) to a minute (large batches on a slow node).
STEP_TIME_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Families:
    """Every metric object; children are created lazily so a stage exports only what it measured."""

    train_loss: Gauge
    train_loss_term: Gauge
    train_learning_rate: Gauge
    train_images_per_second: Gauge
    train_step: Gauge
    train_epoch: Gauge
    train_steps: Counter
    train_step_duration: Histogram
    train_gpu_memory: Gauge
    train_ranks: Gauge
    train_rank_gpu_memory: Gauge
    train_checkpoints: Counter
    eval_linear_accuracy: Gauge
    eval_mse: Gauge
    eval_psnr: Gauge
    eval_fid: Gauge
    eval_fid_samples: Gauge
    stage_start: Gauge
    stage_duration: Gauge
    stage_last_success: Gauge
    stage_failures: Counter


def build_families(registry: CollectorRegistry) -> Families:
    """Register every hybridmi metric on ``registry`` (a fresh registry per stage run)."""

    def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, BASE_LABELS + extra, registry=registry)

    def counter(name: str, doc: str) -> Counter:  # exposed as <name>_total
        return Counter(f"{PREFIX}_{name}", doc, BASE_LABELS, registry=registry)

    return Families(
        train_loss=gauge("train_loss", "Total training loss, mean over the last report interval"),
        train_loss_term=gauge(
            "train_loss_term",
            "Each training loss term (e.g. recon, infonce), mean over the last report interval",
            ("term",),
        ),
        train_learning_rate=gauge("train_learning_rate", "Optimiser learning rate"),
        train_images_per_second=gauge("train_images_per_second", "Training throughput in images per second"),
        train_step=gauge("train_step", "Optimisation steps completed (resumed runs start at their checkpoint's step)"),
        train_epoch=gauge("train_epoch", "Passes over the training split completed (fractional)"),
        train_steps=counter("train_steps", "Optimisation steps run by this process"),
        train_step_duration=Histogram(
            f"{PREFIX}_train_step_duration_seconds",
            "Wall time of one optimisation step",
            BASE_LABELS,
            buckets=STEP_TIME_BUCKETS_S,
            registry=registry,
        ),
        train_gpu_memory=gauge(
            "train_gpu_memory_bytes", "Peak CUDA memory allocated by the trainer (rank 0 when distributed)"
        ),
        train_ranks=gauge(
            "train_ranks", "Processes (DDP ranks) training together; throughput and loss are the global batch's"
        ),
        train_rank_gpu_memory=gauge(
            "train_rank_gpu_memory_bytes", "Peak CUDA memory allocated by each DDP rank", ("rank",)
        ),
        train_checkpoints=counter("train_checkpoints", "Checkpoints written"),
        eval_linear_accuracy=gauge(
            "eval_linear_accuracy_ratio", "Linear-probe test accuracy as a fraction in [0, 1]", ("feature",)
        ),
        eval_mse=gauge("eval_mse", "Reconstruction mean squared error (the paper's unit)"),
        eval_psnr=gauge("eval_psnr_decibels", "Reconstruction peak signal-to-noise ratio"),
        eval_fid=gauge("eval_fid", "Frechet inception distance of generated samples"),
        eval_fid_samples=gauge("eval_fid_samples", "Number of generated samples the FID was computed on"),
        stage_start=gauge("stage_start_timestamp_seconds", "Unix time the stage started"),
        stage_duration=gauge("stage_duration_seconds", "Wall time of the stage run, success or failure"),
        stage_last_success=gauge(
            "stage_last_success_timestamp_seconds", "Unix time the stage last finished successfully"
        ),
        stage_failures=counter("stage_failures", "Stage runs that raised"),
    )
