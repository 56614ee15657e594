"""The hybridmi pipeline: prepare → train → {probe, reconstruction, latents → ddim → {sample, fid, figures}} → report.

Only wiring lives here. The signature is generated from the parameter tables (pipelines/parameters.py);
task settings come from pipelines/settings.py. ``build_hybridmi_pipeline(limits)`` compiles other
timeouts; ``hybridmi_pipeline`` is the one with the default limits (pipelines/compiled/hybridmi.yaml).
"""
from __future__ import annotations

from typing import Any

from components import configure, ddim, fid, figures, latents, prepare, probe, reconstruction, report, sample, train
from pipelines.parameters import PIPELINE_PARAMETERS, config_values, define_pipeline
from pipelines.settings import Limits, TaskSettings, control_task, stage_task

PIPELINE_NAME = "hybridmi"
DESCRIPTION = "Hybrid MI representation learning: autoencoder + MoCo-v2, latent DDIM, probe/MSE/FID, report."


def wire(p: dict[str, Any], limits: Limits) -> None:
    settings = TaskSettings(p, limits)
    cfg = control_task(configure(config=p["config"], **config_values(p)), settings).output
    data = stage_task(prepare(config=cfg), settings)
    dataset = data.outputs["dataset"]
    trained = stage_task(train(config=cfg, dataset=dataset, resume_from=p["resume_from"]), settings)
    model = trained.outputs["model"]
    probed = stage_task(probe(config=cfg, dataset=dataset, model=model), settings)
    recon = stage_task(reconstruction(config=cfg, dataset=dataset, model=model), settings)
    encoded = stage_task(latents(config=cfg, dataset=dataset, model=model), settings)
    z = encoded.outputs["latents"]
    diffusion = stage_task(ddim(config=cfg, latents=z, resume_from=p["resume_from"]), settings)
    sampler = diffusion.outputs["ddim"]
    stage_task(sample(config=cfg, ddim=sampler, latents=z, model=model), settings)
    scored = stage_task(fid(config=cfg, ddim=sampler, latents=z, model=model, dataset=dataset), settings)
    stage_task(figures(config=cfg, dataset=dataset, model=model, ddim=sampler, latents=z), settings)
    stage_task(report(config=cfg, probe=probed.outputs["metrics"], reconstruction=recon.outputs["metrics"],
                      fid=scored.outputs["metrics"]), settings)


def build_hybridmi_pipeline(limits: Limits = Limits()):
    """The pipeline compiled with ``limits`` (timeouts)."""
    return define_pipeline(lambda p: wire(p, limits), name=PIPELINE_NAME, description=DESCRIPTION,
                           parameters=PIPELINE_PARAMETERS)


hybridmi_pipeline = build_hybridmi_pipeline()
