"""The train step on many nodes: a task that runs training as a Kubeflow Trainer TrainJob and returns its model.

Used in place of ``train`` by the multi-node pipeline (pipelines/hybridmi_pipeline.py, ``multinode=True``).
The task itself needs no GPU: it publishes the data set to object storage, creates the TrainJob
(``train_nodes`` nodes × ``gpu_count`` GPUs of ``image`` on the torch-distributed runtime, the storage
Secret as env, the same config), logs its state until it ends, and downloads the model its rank 0
published under the run's id (hybridmi/task/trainjob/). ``deadline_s``: the TrainJob's
activeDeadlineSeconds (the compile-time train timeout).
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
):
    """Train the hybrid model on train_nodes nodes x gpu_count GPUs through a Kubeflow Trainer TrainJob."""
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.trainjob.launch import node_settings, run_trainjob_task

    setup_task_logging()
    nodes = node_settings(
        image=image,
        train_nodes=train_nodes,
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
        config, dataset_dir=dataset.path, model_dir=model.path, nodes=nodes, resume_from=resume_from
    )
    log_metrics(metrics, values)
