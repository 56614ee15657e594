"""The hybridmi pipeline: prepare → train → {probe, reconstruction, latents → ddim → {export, sample → {fid, figures}}}
→ report."""

from __future__ import annotations

from typing import Any

from components import (
    ddim,
    export,
    fid,
    figures,
    latents,
    prepare,
    probe,
    reconstruction,
    report,
    sample,
    train,
    train_trainjob,
)
from pipelines.parameters import MULTINODE_PARAMETERS, PIPELINE_PARAMETERS, define_pipeline, stage_values
from pipelines.settings import Limits, TaskSettings, stage_task, trainjob_task

PIPELINE_NAME = "hybridmi"
MULTINODE_NAME = "hybridmi-multinode"
DESCRIPTION = "Hybrid MI representation learning: autoencoder + MoCo-v2, latent DDIM, probe/MSE/FID, report."
MULTINODE_DESCRIPTION = DESCRIPTION + " Training on train_nodes nodes through a Kubeflow Trainer TrainJob."
# The run parameters the multi-node train task turns into its TrainJob's nodes (components/trainjob.py).
TRAINJOB_INPUTS = (
    "image",
    "train_nodes",
    "gpu_type",
    "gpu_count",
    "gpu_node_selector",
    "gpu_tolerations",
    "task_cpu_request",
    "task_cpu_limit",
    "task_memory_request",
    "task_memory_limit",
    "store_secret",
)


def train_step(p: dict[str, Any], settings: TaskSettings, dataset: Any, *, multinode: bool):
    """The train task: the stage in one pod, or (multinode) a task that runs it as a TrainJob; both output ``model``."""
    values = {"config": p["config"], "dataset": dataset, "resume_from": p["resume_from"], **stage_values(p, "train")}
    if not multinode:
        return stage_task(train(**values), settings)
    return trainjob_task(
        train_trainjob(
            **values,
            deadline_s=settings.limits.timeout_s("train"),
            image_pull_secret=settings.limits.image_pull_secret,
            **{name: p[name] for name in TRAINJOB_INPUTS},
        ),
        settings,
    )


def wire(p: dict[str, Any], limits: Limits, *, multinode: bool = False) -> None:
    settings, cfg = TaskSettings(p, limits), p["config"]
    dataset = stage_task(prepare(config=cfg), settings).outputs["dataset"]
    model = train_step(p, settings, dataset, multinode=multinode).outputs["model"]
    probed = stage_task(probe(config=cfg, dataset=dataset, model=model), settings)
    recon = stage_task(reconstruction(config=cfg, dataset=dataset, model=model), settings)
    z = stage_task(latents(config=cfg, dataset=dataset, model=model), settings).outputs["latents"]
    diffusion = stage_task(
        ddim(config=cfg, latents=z, resume_from=p["resume_from"], **stage_values(p, "ddim")), settings
    )
    stage_task(export(config=cfg, model=model, ddim=diffusion.outputs["ddim"]), settings)
    sampled = stage_task(
        sample(config=cfg, ddim=diffusion.outputs["ddim"], latents=z, model=model, **stage_values(p, "sample")),
        settings,
    )
    samples = sampled.outputs["samples"]
    scored = stage_task(fid(config=cfg, samples=samples, dataset=dataset, model=model), settings)
    trained_ddim = diffusion.outputs["ddim"]
    drawn = stage_task(figures(config=cfg, dataset=dataset, model=model, samples=samples, ddim=trained_ddim), settings)
    stage_task(
        report(
            config=cfg,
            probe=probed.outputs["metrics"],
            reconstruction=recon.outputs["metrics"],
            fid=scored.outputs["metrics"],
            figures=drawn.outputs["figures"],
        ),
        settings,
    )


def build_hybridmi_pipeline(limits: Limits = Limits(), *, multinode: bool = False):
    """The pipeline compiled with ``limits`` (timeouts); ``multinode``: the train step as a TrainJob.

    A compile-time choice, not ``dsl.If`` on ``train_nodes``: the branches would join through ``dsl.OneOf``,
    which kfp.local 2.17.3 cannot run ("Expected 1 artifact in ArtifactSelectorSpec. Got: 2").
    """
    return define_pipeline(
        lambda p: wire(p, limits, multinode=multinode),
        name=MULTINODE_NAME if multinode else PIPELINE_NAME,
        description=MULTINODE_DESCRIPTION if multinode else DESCRIPTION,
        parameters=PIPELINE_PARAMETERS + (MULTINODE_PARAMETERS if multinode else ()),
        defaults={"image": limits.default_image},
    )


hybridmi_pipeline = build_hybridmi_pipeline()
hybridmi_multinode_pipeline = build_hybridmi_pipeline(multinode=True)
