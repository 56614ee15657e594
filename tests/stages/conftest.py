"""Shared artifacts for the stage tests: a tiny prepare → (random autoencoder) → latents → ddim → sample chain,
randomly initialised FID weights (code paths only) and one fid run."""

import pytest
import torch

from hybridmi.config import load_config
from hybridmi.eval.fid import WEIGHTS_FILE, FIDInceptionV3
from hybridmi.models.autoencoder import Autoencoder
from hybridmi.models.serialize import save_autoencoder
from hybridmi.stages import run_stage


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    """Artifacts of prepare → (a random tiny autoencoder) → latents → ddim → sample, plus the config."""
    root = tmp_path_factory.mktemp("generative")
    cfg = load_config(
        None,
        [
            "data.source=synthetic",
            "data.synthetic_train=24",
            "data.synthetic_test=10",
            "data.synthetic_classes=2",
            f"data.cache_dir={root / 'cache'}",
            "model.channels=4",
            "model.cells_32=0",
            "model.cells_16=0",
            "model.decoder_expand=1",
            "unet.channels=8",
            "unet.channel_mult=[1, 2]",
            "unet.num_res_blocks=1",
            "unet.attn_resolutions=[8]",
            "diffusion.num_timesteps=50",
            "ddim.batch_size=8",
            "ddim.epochs=1",
            "ddim.log_every=1",
            "latents.batch_size=8",
            "sampling.steps=5",
            "sampling.num_samples=5",
            "sampling.batch_size=3",
            "fid.batch_size=4",
            "fid.reference_split=test",
            "figures.pairs=2",
            "figures.steps=3",
            "figures.grid_samples=4",
            "runtime.device=cpu",
            "eval.batch_size=8",
            "eval.probe_epochs=2",
            "eval.probe_batch_size=8",
            "eval.probe_weight_decays=[0.0]",
            "eval.knn_k=3",
        ],
    )
    art = {name: root / name for name in ("dataset", "model", "latents", "ddim", "samples")}
    run_stage("prepare", cfg, {}, {"dataset": art["dataset"]})
    torch.manual_seed(0)
    save_autoencoder(
        Autoencoder(channels=4, cells_32=0, cells_16=0, decoder_expand=1, latent_channels=6), art["model"] / "model.pt"
    )
    latents_metrics = run_stage("latents", cfg, {k: art[k] for k in ("dataset", "model")}, {"latents": art["latents"]})
    ddim_metrics = run_stage("ddim", cfg, {"latents": art["latents"]}, {"ddim": art["ddim"]})
    run_stage("sample", cfg, {k: art[k] for k in ("ddim", "latents", "model")}, {"samples": art["samples"]})
    return cfg, art, latents_metrics, ddim_metrics


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds randomly initialised FID Inception weights (no conversion record)."""
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FIDInceptionV3().net.state_dict(), home / "hub" / "checkpoints" / WEIGHTS_FILE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        mp.setenv("HYBRIDMI_FID_CACHE", str(home / "fid-cache"))
        yield home


@pytest.fixture(scope="module")
def fid_run(chain, random_weights, tmp_path_factory):
    cfg, art, _, _ = chain
    out = tmp_path_factory.mktemp("fid") / "metrics"
    metrics = run_stage("fid", cfg, {k: art[k] for k in ("samples", "dataset", "model")}, {"metrics": out})
    return metrics, out
