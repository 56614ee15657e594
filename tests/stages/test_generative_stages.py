"""The generative half end to end on tiny inputs: latents → ddim → sample / fid / figures."""
import json

import pytest
import torch
from PIL import Image

from hybridmi.config import load_config
from hybridmi.eval.fid import WEIGHTS_FILE, FIDInceptionV3
from hybridmi.eval.figures import grid_size
from hybridmi.eval.latents import load_latents, load_stats
from hybridmi.models.autoencoder import Autoencoder
from hybridmi.models.serialize import save_autoencoder
from hybridmi.stages import run_stage
from hybridmi.stages.common import read_sidecar


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Artifacts of prepare → (a random tiny autoencoder) → latents → ddim, plus the config."""
    root = tmp_path_factory.mktemp("generative")
    cfg = load_config(None, [
        "data.source=synthetic", "data.synthetic_train=24", "data.synthetic_test=10", "data.synthetic_classes=2",
        f"data.cache_dir={root / 'cache'}", "model.channels=4", "model.cells_32=0", "model.cells_16=0",
        "model.decoder_expand=1", "unet.channels=8", "unet.channel_mult=[1, 2]", "unet.num_res_blocks=1",
        "unet.attn_resolutions=[8]", "diffusion.num_timesteps=50", "ddim.batch_size=8", "ddim.epochs=1",
        "ddim.log_every=1", "latents.batch_size=8", "sampling.steps=5", "sampling.num_samples=4",
        "sampling.saved_samples=5", "sampling.batch_size=3", "fid.batch_size=4", "fid.reference_split=test",
        "figures.pairs=2", "figures.steps=3", "figures.grid_samples=4", "train.device=cpu",
    ])
    art = {name: root / name for name in ("dataset", "model", "latents", "ddim")}
    run_stage("prepare", cfg, {}, {"dataset": art["dataset"]})
    torch.manual_seed(0)
    save_autoencoder(Autoencoder(channels=4, cells_32=0, cells_16=0, decoder_expand=1, latent_channels=6),
                     art["model"] / "model.pt")
    latents_metrics = run_stage("latents", cfg, {k: art[k] for k in ("dataset", "model")}, {"latents": art["latents"]})
    ddim_metrics = run_stage("ddim", cfg, {"latents": art["latents"]}, {"ddim": art["ddim"]})
    return cfg, art, latents_metrics, ddim_metrics


def test_latents_stage__writes_flipped_train_test_and_statistics(chain):
    cfg, art, metrics, _ = chain
    train, test = load_latents(art["latents"] / "train.pt"), load_latents(art["latents"] / "test.pt")
    assert train.latents.shape == (48, 6, 16, 16) and train.latents.dtype == torch.float16 and train.flip
    assert torch.equal(train.labels[:24], train.labels[24:]) and test.latents.shape == (10, 6, 16, 16)
    mean, std = load_stats(art["latents"] / "stats.json")
    assert torch.allclose(mean, train.latents.double().mean(dim=(0, 2, 3)), atol=1e-9)
    assert metrics["latents_train"] == 48.0
    assert read_sidecar(art["latents"])["stage"] == "latents"


def test_ddim_stage__trains_one_epoch_over_flipped_latents_and_describes_itself(chain):
    _, art, _, metrics = chain
    assert metrics["ddim_steps"] == 6.0 and metrics["ddim_loss"] > 0
    assert (art["ddim"] / "last.pt").is_file()
    assert json.loads((art["ddim"] / "metrics.json").read_text()) == metrics


def test_sample_stage__writes_seeded_uint8_samples_and_a_grid(chain, tmp_path):
    cfg, art, _, _ = chain
    inputs = {k: art[k] for k in ("ddim", "latents", "model")}
    run_stage("sample", cfg, inputs, {"samples": tmp_path / "a"})
    run_stage("sample", cfg, inputs, {"samples": tmp_path / "b"})
    a = torch.load(tmp_path / "a" / "samples.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "samples.pt", weights_only=True)
    assert a["images"].shape == (5, 3, 32, 32) and a["images"].dtype == torch.uint8
    assert torch.equal(a["images"], b["images"])  # one seed, one set of samples
    with Image.open(tmp_path / "a" / "samples.png") as grid:
        assert grid.size == grid_size(4, ncols=2)


def test_figures_stage__writes_every_figure_at_its_size(chain, tmp_path):
    cfg, art, _, _ = chain
    metrics = run_stage("figures", cfg, {k: art[k] for k in ("dataset", "model", "ddim", "latents")},
                        {"figures": tmp_path})
    for part in ("z", "y", "yhat"):
        with Image.open(tmp_path / f"interp_{part}.png") as image:
            assert image.size == grid_size(2 * 3, ncols=3)  # rows = 2 pairs, columns = 3 weights
        assert metrics[f"interp_{part}_pixel_change"] >= 0
    with Image.open(tmp_path / "reconstructions.png") as image:
        assert image.size == grid_size(4, ncols=4)
    with Image.open(tmp_path / "samples.png") as image:
        assert image.size == grid_size(4, ncols=2)


def test_fid_stage__reports_fid_with_its_sample_count_and_caches_reference(chain, tmp_path, monkeypatch):
    cfg, art, _, _ = chain
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(FIDInceptionV3().net.state_dict(), home / "hub" / "checkpoints" / WEIGHTS_FILE)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("HYBRIDMI_FID_CACHE", str(tmp_path / "fid-cache"))
    out = tmp_path / "metrics"
    metrics = run_stage("fid", cfg, {k: art[k] for k in ("ddim", "latents", "model", "dataset")}, {"metrics": out})
    assert metrics["fid_num_samples"] == 4.0 and metrics["fid_reference_count"] == 10.0
    assert metrics["fid"] == metrics["fid"] and metrics["fid"] >= 0  # finite, non-negative
    assert len(list((tmp_path / "fid-cache").glob("fid-*.npz"))) == 1
    assert json.loads((out / "metrics.json").read_text())["fid"] == metrics["fid"]
    with Image.open(out / "fid_samples.png") as image:
        assert image.size == grid_size(4, ncols=2)


def test_fid_stage__missing_weights_fail_before_sampling(chain, tmp_path, monkeypatch):
    cfg, art, _, _ = chain
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        run_stage("fid", cfg, {k: art[k] for k in ("ddim", "latents", "model", "dataset")}, {"metrics": tmp_path / "m"})
