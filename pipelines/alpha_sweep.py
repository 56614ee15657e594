"""The α sweep: prepare once, then train + probe + reconstruct for every α (at most ``Limits.sweep_parallelism``
at once), then one trade-off table.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Metrics

from components import prepare, probe, reconstruction, tradeoff, train
from hybridmi.parameters import Parameter
from pipelines.parameters import PARAMETERS, TASK_PARAMETERS, define_pipeline, stage_values
from pipelines.settings import Limits, TaskSettings, control_task, stage_task

PIPELINE_NAME = "hybridmi-alpha-sweep"
DESCRIPTION = "Linear accuracy against reconstruction MSE over α (the paper's trade-off)."
# Strings, like every config parameter (a number would reach train's str input as a float).
DEFAULT_ALPHAS_TEXT = ["0.1", "0.3", "0.5", "0.7", "0.9"]
ALPHAS = Parameter("alphas", DEFAULT_ALPHAS_TEXT, "α values of the sweep (a JSON list of strings)")
SWEEP_CONFIG = ("hybrid_epochs", "hybrid_time_budget_minutes", "hybrid_seed")  # the sweep's config parameters
POINT_PARAMETERS = (*TASK_PARAMETERS, PARAMETERS["hybrid_alpha"], *(PARAMETERS[n] for n in SWEEP_CONFIG))
AlphaPoint = NamedTuple("AlphaPoint", probe=Metrics, reconstruction=Metrics)


def wire_point(p: dict[str, Any], limits: Limits) -> AlphaPoint:
    settings, cfg = TaskSettings(p, limits), p["config"]
    trained = train(config=cfg, dataset=p["dataset"], resume_from=p["resume_from"], **stage_values(p, "train"))
    model = stage_task(trained, settings).outputs["model"]
    probed = stage_task(probe(config=cfg, dataset=p["dataset"], model=model), settings)
    recon = stage_task(reconstruction(config=cfg, dataset=p["dataset"], model=model), settings)
    return AlphaPoint(probe=probed.outputs["metrics"], reconstruction=recon.outputs["metrics"])


def wire_sweep(p: dict[str, Any], limits: Limits, point) -> None:
    settings = TaskSettings(p, limits)
    dataset = stage_task(prepare(config=p["config"]), settings).outputs["dataset"]
    with dsl.ParallelFor(p["alphas"], parallelism=limits.sweep_parallelism) as alpha:
        passed = {param.name: p[param.name] for param in POINT_PARAMETERS if param.name != "hybrid_alpha"}
        result = point(hybrid_alpha=alpha, dataset=dataset, **passed)
    control_task(
        tradeoff(
            probes=dsl.Collected(result.outputs["probe"]),
            reconstructions=dsl.Collected(result.outputs["reconstruction"]),
        ),
        settings,
    )


def build_alpha_sweep(limits: Limits = Limits()):
    """The sweep compiled with ``limits`` (timeouts, parallelism)."""
    dataset = inspect.Parameter("dataset", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.Input[dsl.Dataset])
    point = define_pipeline(
        lambda p: wire_point(p, limits),
        name="hybridmi-alpha-point",
        description="Train and evaluate one α on a prepared data set.",
        parameters=POINT_PARAMETERS,
        inputs=[dataset],
        required=[q.name for q in POINT_PARAMETERS],
        returns=AlphaPoint,
    )
    return define_pipeline(
        lambda p: wire_sweep(p, limits, point),
        name=PIPELINE_NAME,
        description=DESCRIPTION,
        parameters=(*TASK_PARAMETERS, ALPHAS, *(PARAMETERS[n] for n in SWEEP_CONFIG)),
        defaults={"image": limits.default_image},
    )


alpha_sweep = build_alpha_sweep()
