"""A tiny trained run's model and ddim artifacts, its probe/reconstruction/fid metrics, and its exported package."""

import pytest
import torch

from hybridmi.cli import main
from hybridmi.config import load_config
from hybridmi.eval.latents import LatentSet, channel_stats, save_latents, save_stats
from hybridmi.models.autoencoder import Autoencoder
from hybridmi.models.serialize import save_autoencoder
from hybridmi.package import load_package
from hybridmi.runtime import write_json
from hybridmi.stages import run_stage

OVERRIDES = [
    "name=tiny",
    "model.channels=4",
    "model.cells_32=0",
    "model.cells_16=1",
    "model.decoder_expand=2",
    "unet.channels=8",
    "unet.channel_mult=[1]",
    "unet.num_res_blocks=1",
    "unet.attn_resolutions=[16]",
    "diffusion.num_timesteps=40",
    "ddim.batch_size=8",
    "ddim.epochs=1",
    "ddim.warmup_steps=0",
    "ddim.checkpoint_every=100",
    "sampling.steps=4",
    "sampling.eta=0.5",
    "sampling.batch_size=3",
    "sampling.seed=7",
    "runtime.device=cpu",
]
RESULTS = {"linear_acc_z": 0.5, "linear_acc_y": 0.25, "linear_acc_yhat": 0.125, "mse": 12.5, "fid": 300.0}


@pytest.fixture(scope="session")
def run_artifacts(tmp_path_factory):
    """(cfg, {model, ddim, latents, metrics}): a random tiny autoencoder whose BatchNorm statistics moved off their
    defaults, and a DDIM trained for two steps on its latents of random images."""
    root = tmp_path_factory.mktemp("run")
    cfg = load_config(None, OVERRIDES)
    art = {name: root / name for name in ("model", "ddim", "latents", "metrics")}
    torch.manual_seed(0)
    m = cfg.model
    ae = Autoencoder(channels=m.channels, cells_32=m.cells_32, cells_16=m.cells_16, decoder_expand=m.decoder_expand)
    images = torch.rand(16, 3, 32, 32)
    with torch.no_grad():
        ae.train()(images)  # running statistics of these images
    save_autoencoder(ae.eval(), art["model"] / "model.pt", extra={"step": 3, "dataset_checksum": "abc123"})
    with torch.no_grad():
        z = ae.encode(images)
    save_latents(art["latents"] / "train.pt", LatentSet(z, torch.zeros(16, dtype=torch.long), False, "abc123"))
    save_stats(art["latents"] / "stats.json", *channel_stats(z), count=len(z))
    run_stage("ddim", cfg, {"latents": art["latents"]}, {"ddim": art["ddim"]})
    write_json(art["metrics"] / "metrics.json", RESULTS)
    return cfg, art


@pytest.fixture(scope="session")
def package(run_artifacts, tmp_path_factory):
    """The package `hybridmi export` makes of ``run_artifacts`` (config: the DDIM artifact's), with the run's metrics."""
    _, art = run_artifacts
    out = tmp_path_factory.mktemp("export") / "package"
    argv = ["export", "--model", art["model"], "--ddim", art["ddim"], "--latents", art["latents"]]
    assert main([*map(str, argv), "--metrics", str(art["metrics"]), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def loaded(package):
    """The package loaded in this process through hybridmi.package."""
    return load_package(package)
