"""One KFP component per pipeline stage; each artifact parameter is named after the stage's artifact.

Bodies import inside the function (KFP inlines only the function's source) and only call library
code: ``run_task`` runs the stage on the artifacts' local directories, then the scalar metrics are
logged on a KFP Metrics artifact so they show in the UI. Stages whose own output is a metrics
directory (probe, reconstruction, fid) log on that artifact; the others get an extra ``metrics``
output. Task settings (image, GPU, secrets, resources, run id) are applied by pipelines/settings.py,
not here; ``base_image`` is only the default a pipeline replaces with its ``image`` parameter.
``resume_from`` (train, ddim): a run id whose mirrored checkpoints the trainer continues from.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def prepare(config: str, dataset: Output[Dataset], metrics: Output[Metrics]):
    """Decode the data source once into uint8 tensors (published to object storage by checksum)."""
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    result = run_task("prepare", config, inputs={}, outputs={"dataset": dataset.path})
    dataset.metadata.update(result.metadata)
    log_metrics(metrics, result.metrics, metadata=result.metadata)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train(config: str, dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics], resume_from: str = ""):
    """Train the hybrid autoencoder + MoCo-v2 (GPU); checkpoints mirrored to object storage, keyed by the run."""
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    result = run_task(
        "train", config, inputs={"dataset": dataset.path}, outputs={"model": model.path}, resume_from=resume_from
    )
    log_metrics(metrics, result.metrics)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def probe(
    config: str,
    dataset: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
):
    """Linear-probe (and kNN) accuracy of the frozen features; test confusion matrix."""
    from hybridmi.task.component import log_confusion, log_metrics, setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    result = run_task(
        "probe", config, inputs={"dataset": dataset.path, "model": model.path}, outputs={"metrics": metrics.path}
    )
    log_metrics(metrics, result.metrics)
    log_confusion(confusion, metrics.path)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def reconstruction(config: str, dataset: Input[Dataset], model: Input[Model], metrics: Output[Metrics]):
    """Test-set reconstruction MSE (summed over the 3072 values per image) and PSNR."""
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    result = run_task(
        "reconstruction",
        config,
        inputs={"dataset": dataset.path, "model": model.path},
        outputs={"metrics": metrics.path},
    )
    log_metrics(metrics, result.metrics)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def latents(
    config: str, dataset: Input[Dataset], model: Input[Model], latents: Output[Dataset], metrics: Output[Metrics]
):
    """Encode the data set with the frozen encoder into latents z (GPU)."""
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    result = run_task(
        "latents", config, inputs={"dataset": dataset.path, "model": model.path}, outputs={"latents": latents.path}
    )
    log_metrics(metrics, result.metrics)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ddim(config: str, latents: Input[Dataset], ddim: Output[Model], metrics: Output[Metrics], resume_from: str = ""):
    """Train the latent DDIM (GPU); checkpoints mirrored to object storage, keyed by the run."""
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    result = run_task(
        "ddim", config, inputs={"latents": latents.path}, outputs={"ddim": ddim.path}, resume_from=resume_from
    )
    log_metrics(metrics, result.metrics)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def sample(
    config: str,
    ddim: Input[Model],
    latents: Input[Dataset],
    model: Input[Model],
    samples: Output[Dataset],
    metrics: Output[Metrics],
):
    """Draw the run's DDIM samples once (GPU): decoded, uint8, in chunk files that fid and figures read."""
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    result = run_task(
        "sample",
        config,
        inputs={"ddim": ddim.path, "latents": latents.path, "model": model.path},
        outputs={"samples": samples.path},
    )
    log_metrics(metrics, result.metrics)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fid(config: str, samples: Input[Dataset], dataset: Input[Dataset], metrics: Output[Metrics]):
    """FID of the sample stage's samples against the reference split (GPU)."""
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    result = run_task(
        "fid", config, inputs={"samples": samples.path, "dataset": dataset.path}, outputs={"metrics": metrics.path}
    )
    log_metrics(metrics, result.metrics)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def figures(
    config: str,
    dataset: Input[Dataset],
    model: Input[Model],
    samples: Input[Dataset],
    figures: Output[Artifact],
    gallery: Output[HTML],
    metrics: Output[Metrics],
):
    """Reconstructions, interpolations (z, y only, ŷ only) and a grid of the samples; an HTML gallery of them."""
    from hybridmi.eval.render import write_gallery
    from hybridmi.task.component import log_metrics, setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    result = run_task(
        "figures",
        config,
        inputs={"dataset": dataset.path, "model": model.path, "samples": samples.path},
        outputs={"figures": figures.path},
    )
    write_gallery(figures.path, gallery.path, title="hybridmi figures")
    log_metrics(metrics, result.metrics)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def report(
    config: str,
    probe: Input[Metrics],
    reconstruction: Input[Metrics],
    fid: Input[Metrics],
    figures: Input[Artifact],
    report: Output[Artifact],
    page: Output[HTML],
    summary: Output[Markdown],
):
    """The run's report: Table-1-style results beside the paper's, figures, FID protocol, config, timings."""
    from hybridmi.eval.render import copy_html, copy_markdown
    from hybridmi.task.component import setup_task_logging
    from hybridmi.task.run import run_task

    setup_task_logging()
    run_task(
        "report",
        config,
        inputs={"probe": probe.path, "reconstruction": reconstruction.path, "fid": fid.path, "figures": figures.path},
        outputs={"report": report.path},
    )
    copy_html(report.path, page.path)
    copy_markdown(report.path, summary.path)
