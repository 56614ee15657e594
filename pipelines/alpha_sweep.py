"""The α sweep: prepare once, then train + probe + reconstruct for every α in parallel, then one trade-off table.

The per-α tasks live in a nested pipeline that receives the task parameters as its own inputs:
accelerator settings on a task directly inside ``dsl.ParallelFor`` fail under kfp.local (REFERENCE §4).
Only pipeline parameters and artifacts enter the loop: kfp.local 2.17.3 replaces every task-output
*parameter* passed into a ParallelFor with the loop item, so each α resolves its config itself.
"""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Metrics

from components import configure, prepare, probe, reconstruction, train, tradeoff
from hybridmi.cluster import STORE_SECRET_NAME
from pipelines.settings import Cluster, stage_task

PIPELINE_NAME = "hybridmi-alpha-sweep"
# Strings, like every config parameter (a number would reach configure's str input as a float).
DEFAULT_ALPHAS_TEXT = ["0.1", "0.3", "0.5", "0.7", "0.9"]


@dsl.pipeline(name="hybridmi-alpha-point", description="Train and evaluate one α on a prepared data set.")
def alpha_point(
    config: str,
    hybrid_alpha: str,
    hybrid_epochs: str,
    hybrid_seed: str,
    dataset: dsl.Input[dsl.Dataset],
    gpu_type: str,
    gpu_count: str,
    task_cpu_request: str,
    task_memory_request: str,
    store_secret: str,
) -> NamedTuple("AlphaPoint", probe=Metrics, reconstruction=Metrics):
    cluster = Cluster(gpu_type=gpu_type, gpu_count=gpu_count, cpu_request=task_cpu_request,
                      memory_request=task_memory_request, store_secret=store_secret)
    cfg = configure(config=config, hybrid_alpha=hybrid_alpha, hybrid_epochs=hybrid_epochs, hybrid_seed=hybrid_seed).output
    model = stage_task(train(config=cfg, dataset=dataset), cluster, gpu=True).outputs["model"]
    probed = stage_task(probe(config=cfg, dataset=dataset, model=model), cluster)
    recon = stage_task(reconstruction(config=cfg, dataset=dataset, model=model), cluster)
    outputs = NamedTuple("AlphaPoint", probe=Metrics, reconstruction=Metrics)
    return outputs(probe=probed.outputs["metrics"], reconstruction=recon.outputs["metrics"])


@dsl.pipeline(name=PIPELINE_NAME, description="Linear accuracy against reconstruction MSE over α (the paper's trade-off).")
def alpha_sweep(
    config: str = "",
    alphas: list = DEFAULT_ALPHAS_TEXT,
    hybrid_epochs: str = "",
    hybrid_seed: str = "",
    gpu_type: str = "nvidia.com/gpu",
    gpu_count: str = "1",
    task_cpu_request: str = "1",
    task_memory_request: str = "4Gi",
    store_secret: str = STORE_SECRET_NAME,
):
    cluster = Cluster(gpu_type=gpu_type, gpu_count=gpu_count, cpu_request=task_cpu_request,
                      memory_request=task_memory_request, store_secret=store_secret)
    cfg = configure(config=config, hybrid_epochs=hybrid_epochs, hybrid_seed=hybrid_seed).output
    dataset = stage_task(prepare(config=cfg), cluster).outputs["dataset"]
    with dsl.ParallelFor(alphas) as alpha:
        point = alpha_point(config=config, hybrid_alpha=alpha, hybrid_epochs=hybrid_epochs, hybrid_seed=hybrid_seed,
                            dataset=dataset, gpu_type=gpu_type, gpu_count=gpu_count,
                            task_cpu_request=task_cpu_request, task_memory_request=task_memory_request,
                            store_secret=store_secret)
    tradeoff(probes=dsl.Collected(point.outputs["probe"]), reconstructions=dsl.Collected(point.outputs["reconstruction"]))
