"""KFP components: one lightweight Python component per pipeline stage, all on the project image."""

from components.control import tradeoff
from components.image import DEFAULT_IMAGE
from components.stages import ddim, export, fid, figures, latents, prepare, probe, reconstruction, report, sample, train
from components.trainjob import train_trainjob

# Stage name -> component (the names of hybridmi.stages.STAGE_NAMES).
STAGE_COMPONENTS = {
    "prepare": prepare,
    "train": train,
    "probe": probe,
    "reconstruction": reconstruction,
    "latents": latents,
    "ddim": ddim,
    "export": export,
    "sample": sample,
    "fid": fid,
    "figures": figures,
    "report": report,
}

__all__ = ["DEFAULT_IMAGE", "STAGE_COMPONENTS", "tradeoff", "train_trainjob", *STAGE_COMPONENTS]
