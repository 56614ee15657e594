"""KFP components: one lightweight Python component per pipeline stage, all on the project image.

Each body only calls ``hybridmi.task.run.run_task`` (which calls ``hybridmi.stages.run_stage``),
so the same definitions run under kfp.local's SubprocessRunner and DockerRunner and on a cluster.
``train_trainjob`` (the multi-node pipeline's train step) runs ``train`` as a Kubeflow Trainer TrainJob.
"""

from components.control import configure, tradeoff
from components.image import DEFAULT_IMAGE
from components.stages import ddim, fid, figures, latents, prepare, probe, reconstruction, report, sample, train
from components.trainjob import train_trainjob

# Stage name -> component (the names of hybridmi.stages.STAGE_NAMES).
STAGE_COMPONENTS = {
    "prepare": prepare,
    "train": train,
    "probe": probe,
    "reconstruction": reconstruction,
    "latents": latents,
    "ddim": ddim,
    "sample": sample,
    "fid": fid,
    "figures": figures,
    "report": report,
}

__all__ = ["DEFAULT_IMAGE", "STAGE_COMPONENTS", "configure", "tradeoff", "train_trainjob", *STAGE_COMPONENTS]
