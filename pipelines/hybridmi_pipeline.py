"""The hybridmi pipeline: prepare → train → {probe, reconstruction, latents → ddim → sample → {fid, figures}} → report.

Only wiring lives here. The signature is generated from the parameter tables (pipelines/parameters.py);
task settings come from pipelines/settings.py. ``build_hybridmi_pipeline(limits)`` compiles other
timeouts; ``hybridmi_pipeline`` is the one with the default limits (pipelines/compiled/hybridmi.yaml),
``hybridmi_multinode_pipeline`` the same DAG whose train step is a Kubeflow Trainer TrainJob on
``train_nodes`` nodes (pipelines/compiled/hybridmi_multinode.yaml).
"""

from __future__ import annotations

from typing import Any

from components import (
    configure,
    ddim,
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
from pipelines.parameters import MULTINODE_PARAMETERS, PIPELINE_PARAMETERS, config_values, define_pipeline
from pipelines.settings import Limits, TaskSettings, control_task, stage_task, trainjob_task

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
    "resume_from",
)


def train_step(p: dict[str, Any], settings: TaskSettings, cfg: Any, dataset: Any, *, multinode: bool):
    """The train task: the stage in one pod, or (multinode) a task that runs it as a TrainJob; both output ``model``."""
    if not multinode:
        return stage_task(train(config=cfg, dataset=dataset, resume_from=p["resume_from"]), settings)
    return trainjob_task(
        train_trainjob(
            config=cfg,
            dataset=dataset,
            deadline_s=settings.limits.timeout_s("train"),
            image_pull_secret=settings.limits.image_pull_secret,
            **{name: p[name] for name in TRAINJOB_INPUTS},
        ),
        settings,
    )


def wire(p: dict[str, Any], limits: Limits, *, multinode: bool = False) -> None:
    settings = TaskSettings(p, limits)
    cfg = control_task(configure(config=p["config"], **config_values(p)), settings).output
    data = stage_task(prepare(config=cfg), settings)
    dataset = data.outputs["dataset"]
    trained = train_step(p, settings, cfg, dataset, multinode=multinode)
    model = trained.outputs["model"]
    probed = stage_task(probe(config=cfg, dataset=dataset, model=model), settings)
    recon = stage_task(reconstruction(config=cfg, dataset=dataset, model=model), settings)
    encoded = stage_task(latents(config=cfg, dataset=dataset, model=model), settings)
    z = encoded.outputs["latents"]
    diffusion = stage_task(ddim(config=cfg, latents=z, resume_from=p["resume_from"]), settings)
    sampled = stage_task(sample(config=cfg, ddim=diffusion.outputs["ddim"], latents=z, model=model), settings)
    samples = sampled.outputs["samples"]
    scored = stage_task(fid(config=cfg, samples=samples, dataset=dataset), settings)
    drawn = stage_task(figures(config=cfg, dataset=dataset, model=model, samples=samples), settings)
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
    """The pipeline compiled with ``limits`` (timeouts); ``multinode``: the train step as a TrainJob (hybridmi-multinode).

    A compile-time choice, not a ``dsl.If`` on ``train_nodes``: downstream tasks would take the model
    through ``dsl.OneOf`` of the two branches, which kfp.local 2.17.3 cannot run ("Expected 1 artifact
    in ArtifactSelectorSpec. Got: 2", even on the untaken branch), and every local run goes through kfp.local.
    """
    if not multinode:
        return define_pipeline(
            lambda p: wire(p, limits),
            name=PIPELINE_NAME,
            description=DESCRIPTION,
            parameters=PIPELINE_PARAMETERS,
            defaults={"image": limits.default_image},
        )
    return define_pipeline(
        lambda p: wire(p, limits, multinode=True),
        name=MULTINODE_NAME,
        description=MULTINODE_DESCRIPTION,
        parameters=PIPELINE_PARAMETERS + MULTINODE_PARAMETERS,
        defaults={"image": limits.default_image},
    )


hybridmi_pipeline = build_hybridmi_pipeline()
hybridmi_multinode_pipeline = build_hybridmi_pipeline(multinode=True)
