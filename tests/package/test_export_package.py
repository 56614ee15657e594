"""The package directory: what it holds, checksums, manifest and card; loaded through hybridmi it computes what the
library computes, and a changed byte is refused in one line."""

import json
import shutil

import pytest
import torch

from hybridmi.diffusion.schedule import timesteps
from hybridmi.errors import UsageError
from hybridmi.eval.latents import save_stats
from hybridmi.models.autoencoder import split_latent
from hybridmi.models.serialize import load_autoencoder
from hybridmi.package import describe_package, export_package, load_package, loader
from hybridmi.train.ddim import load_ddim
from hybridmi.train.sampling import decoded_samples

FILES = {"encoder.pt2", "decoder.pt2", "denoiser.pt2", "package.json", "config.yaml", "load.py", "MODEL_CARD.md"}


def test_package__holds_programs_config_loader_card_and_the_checksums_of_every_file(package):
    assert {p.name for p in package.iterdir()} == FILES | {"checksums.json"}
    listed = json.loads((package / "checksums.json").read_text())["files"]
    assert set(listed) == FILES and all(loader.sha256(package / n) == digest for n, digest in listed.items())
    with open(loader.__file__, "rb") as fh:  # the package's loader is the code hybridmi.package runs
        assert (package / "load.py").read_bytes() == fh.read()


def test_manifest__standardisation_schedule_split_and_sampler_of_the_run(package, run_artifacts):
    cfg, art = run_artifacts
    manifest = json.loads((package / "package.json").read_text())
    ddim = load_ddim(art["ddim"])
    assert torch.equal(torch.tensor(manifest["standardisation"]["mean"], dtype=torch.float64), ddim.mean)
    assert torch.equal(torch.tensor(manifest["standardisation"]["std"], dtype=torch.float64), ddim.std)
    assert torch.equal(torch.tensor(manifest["schedule"]["alphas_cumprod"], dtype=torch.float64), ddim.alphas_cumprod)
    assert manifest["latent"] == {"channels": 6, "size": 16, "contrastive_channels": 3}
    assert manifest["sampler"] == {"steps": 4, "eta": 0.5, "spacing": "uniform", "batch_size": 3, "seed": 7}
    assert manifest["training"] == {"hybrid_steps": 3, "ddim_steps": ddim.step, "dataset_checksum": "abc123"}
    assert describe_package(package) == {
        "format": "hybridmi-model-package/1",
        "checksums_sha256": loader.sha256(package / "checksums.json"),
        "config_hash": cfg.hash(),
        "code_version": manifest["code_version"],
    }


def test_model_card__names_data_budget_and_the_runs_table1_numbers(package):
    card = (package / "MODEL_CARD.md").read_text()
    assert "# hybridmi model `tiny`" in card and "data set checksum `abc123`" in card
    assert "hybrid model 3 steps" in card and "DDIM 2 steps of 8 latents" in card
    assert "| linear accuracy on z (%) | 50 |" in card and "| linear accuracy on ŷ (%) | 12.5 |" in card
    assert "| MSE (Σ over 3072 values) | 12.5 |" in card and "| FID | 300 |" in card


def test_encode_decode__equal_the_library_for_any_batch_size(loaded, run_artifacts):
    _, art = run_artifacts
    ae = load_autoencoder(art["model"] / "model.pt")
    for batch in (1, 5):
        x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        z, y, yhat = loaded.encode(x)
        want = ae.encode(x)
        torch.testing.assert_close(z, want, rtol=0, atol=1e-5)
        assert all(torch.equal(a, b) for a, b in zip((y, yhat), split_latent(z, 3)))
        torch.testing.assert_close(loaded.decode(want), ae.decode(want), rtol=0, atol=1e-5)
    uint8 = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)  # as the latents stage reads images
    torch.testing.assert_close(loaded.encode(uint8)[0], ae.encode(uint8.float().div(255)), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"expects \(B, 3, 32, 32\) images"):
        loaded.encode(torch.rand(2, 3, 64, 64))


def test_generate__draws_the_sample_stages_images_with_the_same_settings(loaded, run_artifacts):
    cfg, art = run_artifacts
    ae, ddim = load_autoencoder(art["model"] / "model.pt"), load_ddim(art["ddim"])
    settings = dict(steps=4, eta=0.5, seed=7, batch_size=3)
    want = torch.cat(list(decoded_samples(ddim, ae, 5, spacing="uniform", **settings)))
    torch.testing.assert_close(loaded.generate(5, **settings), want, rtol=0, atol=1e-5)
    torch.testing.assert_close(loaded.generate(5), want, rtol=0, atol=1e-5)  # the package's defaults: the config's
    deterministic = [loaded.generate(2, steps=3, eta=0.0, seed=s) for s in (0, 1)]
    assert not torch.equal(*deterministic)  # the seed draws x_T even at η = 0


@pytest.mark.parametrize("spacing", ["uniform", "quadratic"])
def test_loader_timesteps__equal_the_library(spacing):
    for num_train, num_sample in ((1000, 50), (1000, 1000), (40, 4), (40, 7)):
        assert loader.timesteps(num_train, num_sample, spacing) == timesteps(num_train, num_sample, spacing)


def test_load_package__refuses_a_changed_byte_in_one_line_naming_the_file(package, tmp_path):
    copy = shutil.copytree(package, tmp_path / "package")
    data = bytearray((copy / "decoder.pt2").read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "decoder.pt2").write_bytes(bytes(data))
    with pytest.raises(UsageError) as refused:
        load_package(copy)
    assert "decoder.pt2" in str(refused.value) and "checksum" in str(refused.value) and "\n" not in str(refused.value)
    (copy / "checksums.json").unlink()
    with pytest.raises(UsageError, match="is not a hybridmi model package"):
        load_package(copy)


def test_export__refuses_latents_of_other_statistics_before_exporting(run_artifacts, tmp_path):
    _, art = run_artifacts
    other = shutil.copytree(art["latents"], tmp_path / "latents")
    save_stats(other / "stats.json", torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64), count=1)
    with pytest.raises(UsageError, match="other statistics"):
        export_package(art["model"], art["ddim"], tmp_path / "package", latents_dir=other)
    assert not (tmp_path / "package").exists()
