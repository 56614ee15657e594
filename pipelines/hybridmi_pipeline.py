"""The hybridmi pipeline: prepare → train → {probe, reconstruction, latents → ddim → {sample, fid, figures}} → report.

Only wiring lives here. Parameters are documented once, in hybridmi/orchestrate/parameters.py
(a test checks this signature against that table); task settings come from pipelines/settings.py.
"""
from kfp import dsl

from components import configure, ddim, fid, figures, latents, prepare, probe, reconstruction, report, sample, train
from hybridmi.cluster import STORE_SECRET_NAME
from pipelines.settings import Cluster, stage_task

PIPELINE_NAME = "hybridmi"


@dsl.pipeline(name=PIPELINE_NAME, description="Hybrid MI representation learning: autoencoder + MoCo-v2, latent DDIM, probe/MSE/FID, report.")
def hybridmi_pipeline(
    config: str = "",
    hybrid_alpha: str = "",
    hybrid_epochs: str = "",
    hybrid_seed: str = "",
    ddim_epochs: str = "",
    ddim_sample_steps: str = "",
    ddim_eta: str = "",
    fid_num_samples: str = "",
    gpu_type: str = "nvidia.com/gpu",
    gpu_count: str = "1",
    task_cpu_request: str = "1",
    task_memory_request: str = "4Gi",
    store_secret: str = STORE_SECRET_NAME,
):
    cluster = Cluster(gpu_type=gpu_type, gpu_count=gpu_count, cpu_request=task_cpu_request,
                      memory_request=task_memory_request, store_secret=store_secret)
    resolved = configure(config=config, hybrid_alpha=hybrid_alpha, hybrid_epochs=hybrid_epochs, hybrid_seed=hybrid_seed,
                         ddim_epochs=ddim_epochs, ddim_sample_steps=ddim_sample_steps, ddim_eta=ddim_eta,
                         fid_num_samples=fid_num_samples)
    cfg = resolved.output
    data = stage_task(prepare(config=cfg), cluster)
    dataset = data.outputs["dataset"]
    trained = stage_task(train(config=cfg, dataset=dataset), cluster, gpu=True)
    model = trained.outputs["model"]
    probed = stage_task(probe(config=cfg, dataset=dataset, model=model), cluster)
    recon = stage_task(reconstruction(config=cfg, dataset=dataset, model=model), cluster)
    encoded = stage_task(latents(config=cfg, dataset=dataset, model=model), cluster, gpu=True)
    z = encoded.outputs["latents"]
    diffusion = stage_task(ddim(config=cfg, latents=z), cluster, gpu=True)
    sampler = diffusion.outputs["ddim"]
    stage_task(sample(config=cfg, ddim=sampler, latents=z, model=model), cluster)
    scored = stage_task(fid(config=cfg, ddim=sampler, latents=z, model=model, dataset=dataset), cluster, gpu=True)
    drawn = stage_task(figures(config=cfg, dataset=dataset, model=model, ddim=sampler, latents=z), cluster)
    stage_task(report(config=cfg, probe=probed.outputs["metrics"], reconstruction=recon.outputs["metrics"],
                      fid=scored.outputs["metrics"], figures=drawn.outputs["figures"]), cluster)
