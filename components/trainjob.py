"""The multi-node pipeline's train step: a GPU-less task that runs training as a Kubeflow Trainer TrainJob of
``train_nodes`` nodes × ``gpu_count`` GPUs and downloads the model its rank 0 published (hybridmi/task/trainjob/).
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train_trainjob(
    config: str,
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    image: str,
    train_nodes: str,
    deadline_s: int,
    gpu_type: str,
    gpu_count: str,
    gpu_node_selector: dict,
    gpu_tolerations: list,
    task_cpu_request: str,
    task_cpu_limit: str,
    task_memory_request: str,
    task_memory_limit: str,
    image_pull_secret: str,
    store_secret: str,
    resume_from: str = "",
    hybrid_alpha: str = "",
    hybrid_epochs: str = "",
    hybrid_time_budget_minutes: str = "",
    hybrid_seed: str = "",
):
    """Train the hybrid model on train_nodes nodes x gpu_count GPUs through a Kubeflow Trainer TrainJob."""
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.failure import recording_failure
    from hybridmi.task.run import task_config
    from hybridmi.task.trainjob.launch import run_trainjob_task
    from hybridmi.task.trainjob.manifest import NodeSettings

    setup_task_logging()
    parameters = {
        "hybrid_alpha": hybrid_alpha,
        "hybrid_epochs": hybrid_epochs,
        "hybrid_time_budget_minutes": hybrid_time_budget_minutes,
        "hybrid_seed": hybrid_seed,
    }
    with recording_failure("train"):
        cfg = task_config("train", config, {"dataset": dataset.path}, parameters)
    nodes = NodeSettings(
        image=image,
        nodes=train_nodes,
        deadline_s=deadline_s,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        cpu_request=task_cpu_request,
        cpu_limit=task_cpu_limit,
        memory_request=task_memory_request,
        memory_limit=task_memory_limit,
        node_selector=gpu_node_selector,
        tolerations=gpu_tolerations,
        image_pull_secret=image_pull_secret,
        store_secret=store_secret,
    )
    values = run_trainjob_task(
        cfg, dataset_dir=dataset.path, model_dir=model.path, nodes=nodes, resume_from=resume_from
    )
    log_metrics(metrics, values)
