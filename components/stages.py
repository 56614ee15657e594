"""One KFP component per pipeline stage; each artifact parameter is named after the stage's artifact."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def prepare(config: str, dataset: Output[Dataset], metrics: Output[Metrics]):
    """Decode the data source once into uint8 tensors (published to object storage by checksum)."""
    from hybridmi.task.component import run_component

    run_component("prepare", config, inputs={}, outputs={"dataset": dataset}, metrics=metrics)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train(
    config: str,
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    resume_from: str = "",
    hybrid_alpha: str = "",
    hybrid_epochs: str = "",
    hybrid_time_budget_minutes: str = "",
    hybrid_seed: str = "",
):
    """Train the hybrid autoencoder + MoCo-v2 (GPU); checkpoints mirrored to object storage, keyed by the run."""
    from hybridmi.task.component import run_component

    parameters = {
        "hybrid_alpha": hybrid_alpha,
        "hybrid_epochs": hybrid_epochs,
        "hybrid_time_budget_minutes": hybrid_time_budget_minutes,
        "hybrid_seed": hybrid_seed,
    }
    run_component(
        "train",
        config,
        inputs={"dataset": dataset},
        outputs={"model": model},
        metrics=metrics,
        parameters=parameters,
        resume_from=resume_from,
    )


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def probe(
    config: str,
    dataset: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
):
    """Linear-probe (and kNN) accuracy of the frozen features; test confusion matrix."""
    from hybridmi.task.component import log_confusion, run_component

    run_component("probe", config, inputs={"dataset": dataset, "model": model}, outputs={"metrics": metrics})
    log_confusion(confusion, metrics.path)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def reconstruction(config: str, dataset: Input[Dataset], model: Input[Model], metrics: Output[Metrics]):
    """Test-set reconstruction MSE (summed over the 3072 values per image) and PSNR."""
    from hybridmi.task.component import run_component

    run_component("reconstruction", config, inputs={"dataset": dataset, "model": model}, outputs={"metrics": metrics})


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def latents(
    config: str, dataset: Input[Dataset], model: Input[Model], latents: Output[Dataset], metrics: Output[Metrics]
):
    """Encode the data set with the frozen encoder into latents z (GPU)."""
    from hybridmi.task.component import run_component

    inputs = {"dataset": dataset, "model": model}
    run_component("latents", config, inputs=inputs, outputs={"latents": latents}, metrics=metrics)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ddim(
    config: str,
    latents: Input[Dataset],
    ddim: Output[Model],
    metrics: Output[Metrics],
    resume_from: str = "",
    ddim_epochs: str = "",
):
    """Train the latent DDIM (GPU); checkpoints mirrored to object storage, keyed by the run."""
    from hybridmi.task.component import run_component

    run_component(
        "ddim",
        config,
        inputs={"latents": latents},
        outputs={"ddim": ddim},
        metrics=metrics,
        parameters={"ddim_epochs": ddim_epochs},
        resume_from=resume_from,
    )


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def export(config: str, model: Input[Model], ddim: Input[Model], package: Output[Model]):
    """The model package: encoder, decoder and DDIM denoiser as torch.export programs, loadable with torch alone."""
    from hybridmi.package import describe_package
    from hybridmi.task.component import run_component

    run_component("export", config, inputs={"model": model, "ddim": ddim}, outputs={"package": package})
    package.metadata.update(describe_package(package.path))  # format, checksums digest, config hash


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def sample(
    config: str,
    ddim: Input[Model],
    latents: Input[Dataset],
    model: Input[Model],
    samples: Output[Dataset],
    metrics: Output[Metrics],
    ddim_sample_steps: str = "",
    ddim_eta: str = "",
    fid_num_samples: str = "",
):
    """Draw the run's DDIM samples once (GPU): decoded, uint8, in chunk files that fid and figures read."""
    from hybridmi.task.component import run_component

    parameters = {"ddim_sample_steps": ddim_sample_steps, "ddim_eta": ddim_eta, "fid_num_samples": fid_num_samples}
    inputs = {"ddim": ddim, "latents": latents, "model": model}
    run_component("sample", config, inputs=inputs, outputs={"samples": samples}, metrics=metrics, parameters=parameters)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fid(config: str, samples: Input[Dataset], dataset: Input[Dataset], model: Input[Model], metrics: Output[Metrics]):
    """FID of the sample stage's samples and reconstruction FID of decoded test images, against the reference (GPU)."""
    from hybridmi.task.component import run_component

    inputs = {"samples": samples, "dataset": dataset, "model": model}
    run_component("fid", config, inputs=inputs, outputs={"metrics": metrics})


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def figures(
    config: str,
    dataset: Input[Dataset],
    model: Input[Model],
    samples: Input[Dataset],
    ddim: Input[Model],
    figures: Output[Artifact],
    gallery: Output[HTML],
    metrics: Output[Metrics],
):
    """Reconstructions, interpolations (z, y only, ŷ only), a grid of the samples and the training curves of both
    trainers (from the model's and the ddim's history.json); an HTML gallery of them."""
    from hybridmi.eval.render import write_gallery
    from hybridmi.task.component import run_component

    inputs = {"dataset": dataset, "model": model, "samples": samples, "ddim": ddim}
    run_component("figures", config, inputs=inputs, outputs={"figures": figures}, metrics=metrics)
    write_gallery(figures.path, gallery.path, title="hybridmi figures")


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
    metrics: Output[Metrics],
):
    """The run's report: Table-1-style results beside the paper's, figures, training curves, FID protocol, config,
    timings; ``metrics``: the headline numbers under their stable names (eval/report.py HEADLINE_METRICS)."""
    from hybridmi.eval.render import copy_html, copy_markdown
    from hybridmi.task.component import run_component

    inputs = {"probe": probe, "reconstruction": reconstruction, "fid": fid, "figures": figures}
    run_component("report", config, inputs=inputs, outputs={"report": report}, metrics=metrics)
    copy_html(report.path, page.path)
    copy_markdown(report.path, summary.path)
