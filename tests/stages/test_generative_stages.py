"""The generative half end to end on tiny inputs: latents → ddim → sample / fid / figures.

FID here runs on randomly initialised Inception weights: these tests check the protocol and code
paths (what is measured and recorded), not FID values (tests/eval/test_fid_real.py does that).
"""
import json

import pytest
import torch
from PIL import Image

from hybridmi.data.prepared import load_dataset
from hybridmi.eval.fid import (WEIGHTS_FILE, activation_statistics, frechet_distance, load_inception,
                               reference_statistics, uint8_batches)
from hybridmi.eval.figures import grid_size
from hybridmi.eval.latents import load_latents, load_stats
from hybridmi.stages import run_stage
from hybridmi.stages.common import read_sidecar
from hybridmi.stages.sample import decoded_samples, load_sampler


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


def test_fid_stage__reports_fid_with_its_sample_count_and_caches_reference(fid_run, random_weights):
    metrics, out = fid_run
    assert metrics["fid_num_samples"] == 4.0 and metrics["fid_reference_count"] == 10.0
    assert metrics["fid"] == metrics["fid"] and metrics["fid"] >= 0  # finite, non-negative
    assert len(list((random_weights / "fid-cache").glob("fid-*-all.npz"))) == 1
    assert json.loads((out / "metrics.json").read_text())["fid"] == metrics["fid"]
    with Image.open(out / "fid_samples.png") as image:
        assert image.size == grid_size(4, ncols=2)


def test_fid_stage__records_its_protocol_and_where_its_inputs_came_from(fid_run, chain):
    _, out = fid_run
    _, art, _, _ = chain
    sidecar = read_sidecar(out)
    protocol = sidecar["fid_protocol"]
    assert protocol["num_samples"] == 4 and protocol["reference_split"] == "test" and protocol["reference_count"] == 10
    assert protocol["reference_subset_seed"] is None and protocol["weights_record"] is None  # random weights: no record
    assert protocol["weights_sha256"] == load_inception(device="cpu").weights_sha256
    dataset = read_sidecar(art["dataset"])
    assert sidecar["upstream"]["dataset"]["dataset_checksum"] == dataset["dataset_checksum"]
    assert sidecar["upstream"]["ddim"]["stage"] == "ddim" and sidecar["upstream"]["ddim"]["seconds"] > 0
    assert sidecar["seconds"] > 0


def test_fid_stage__measures_the_samples_exactly_as_the_sample_stage_saves_them(chain, fid_run, random_weights, tmp_path):
    cfg, art, _, _ = chain
    metrics, _ = fid_run
    same = cfg.model_copy(deep=True)
    same.sampling.saved_samples = same.sampling.num_samples  # the same seed draws the same 4 samples
    run_stage("sample", same, {k: art[k] for k in ("ddim", "latents", "model")}, {"samples": tmp_path})
    saved = torch.load(tmp_path / "samples.pt", weights_only=True)["images"]
    inception = load_inception(device="cpu")
    _, test = load_dataset(art["dataset"])
    reference = reference_statistics(test.images, checksum=test.checksum, model=inception,
                                     cache_dir=random_weights / "fid-cache", batch_size=4)
    expected = frechet_distance(*activation_statistics(uint8_batches(saved, 4), inception), *reference)
    assert metrics["fid"] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_fid_stage__a_random_reference_subset_is_cached_apart_and_recorded(chain, random_weights, tmp_path):
    cfg, art, _, _ = chain
    subset = cfg.model_copy(deep=True)
    subset.fid.reference_samples, subset.fid.reference_seed = 6, 3
    metrics = run_stage("fid", subset, {k: art[k] for k in ("ddim", "latents", "model", "dataset")}, {"metrics": tmp_path})
    assert metrics["fid_reference_count"] == 6.0
    assert read_sidecar(tmp_path)["fid_protocol"]["reference_subset_seed"] == 3
    assert len(list((random_weights / "fid-cache").glob("fid-*-n6s3.npz"))) == 1


def test_sampling__runs_in_float32_whatever_the_training_precision(chain):
    cfg, art, _, _ = chain
    ddim, autoencoder = load_sampler(cfg, {k: art[k] for k in ("ddim", "latents", "model")}, torch.device("cpu"))
    bf16 = cfg.model_copy(deep=True)
    bf16.train.precision = "bf16"  # autocast on the CPU would round the UNet to bfloat16
    a = torch.cat(list(decoded_samples(cfg, ddim, autoencoder, 3)))
    b = torch.cat(list(decoded_samples(bf16, ddim, autoencoder, 3)))
    assert a.dtype == torch.float32 and torch.equal(a, b)


def test_fid_stage__missing_weights_fail_before_sampling(chain, tmp_path, monkeypatch):
    cfg, art, _, _ = chain
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{WEIGHTS_FILE}.*hybridmi fid-weights"):
        run_stage("fid", cfg, {k: art[k] for k in ("ddim", "latents", "model", "dataset")}, {"metrics": tmp_path / "m"})
