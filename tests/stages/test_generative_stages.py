"""The generative half end to end on tiny inputs: latents → ddim → sample → fid / figures.

FID here runs on randomly initialised Inception weights: these tests check the protocol and code
paths (what is measured and recorded), not FID values (tests/eval/test_fid_real.py does that).
"""

import hashlib
import json
import re
import shutil

import pytest
import torch
from PIL import Image

import hybridmi.eval.samples
import hybridmi.train.ddim
import hybridmi.train.sampling
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.fid import (
    WEIGHTS_FILE,
    activation_statistics,
    frechet_distance,
    load_inception,
    reference_statistics,
    reference_subset,
    uint8_batches,
)
from hybridmi.eval.latents import load_latents, load_stats
from hybridmi.eval.samples import INDEX, first_samples, read_index, rebatch, sample_chunks, to_uint8
from hybridmi.models.serialize import load_autoencoder
from hybridmi.stages import run_stage
from hybridmi.stages.common import directory_checksum, read_sidecar
from hybridmi.train.history import HISTORY_FILE, read_history
from hybridmi.train.sampling import decoded_samples, load_sampler


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
    history = read_history(art["ddim"] / HISTORY_FILE)  # ddim.log_every=1: a row a step
    assert history["kind"] == "ddim" and [row["step"] for row in history["rows"]] == [1, 2, 3, 4, 5, 6]
    assert history["rows"][-1]["loss"] == metrics["ddim_loss"]
    assert read_sidecar(art["ddim"])["checksum"] == directory_checksum(art["ddim"])  # the history is checksummed


SAMPLER_INPUTS = ("ddim", "latents", "model")
FIGURES_INPUTS = ("dataset", "model", "samples", "ddim")


def _sampler_inputs(art):
    return {k: art[k] for k in SAMPLER_INPUTS}


def _drawn_directly(cfg, art):
    """The config's samples decoded straight from the sampler, rounded to uint8: what the artifact must hold."""
    ddim, autoencoder = load_sampler(**_sampler_inputs(art), device="cpu")
    s = cfg.sampling
    batches = decoded_samples(
        ddim,
        autoencoder,
        s.num_samples,
        batch_size=s.batch_size,
        steps=s.steps,
        eta=s.eta,
        spacing=s.spacing,
        seed=s.seed,
    )
    return [to_uint8(b) for b in batches]


def test_sample_stage__writes_num_samples_in_several_chunk_files_with_an_index(chain, tmp_path, monkeypatch):
    cfg, art, _, ddim_metrics = chain
    monkeypatch.setattr(hybridmi.eval.samples, "CHUNK_SIZE", 2)
    metrics = run_stage("sample", cfg, _sampler_inputs(art), {"samples": tmp_path})
    index = read_index(tmp_path)
    assert index["count"] == cfg.sampling.num_samples == metrics["samples"] == 5
    assert [c["file"] for c in index["chunks"]] == ["samples-00000.pt", "samples-00001.pt", "samples-00002.pt"]
    assert [c["count"] for c in index["chunks"]] == [2, 2, 1]
    for entry in index["chunks"]:
        assert hashlib.sha256((tmp_path / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
        chunk = torch.load(tmp_path / entry["file"], weights_only=True)
        assert chunk.dtype == torch.uint8 and chunk.shape == (entry["count"], 3, 32, 32)
    s = cfg.sampling
    assert index["sampler"] == {
        "seed": s.seed,
        "steps": s.steps,
        "eta": s.eta,
        "spacing": s.spacing,
        "batch_size": s.batch_size,
        "ddim_step": ddim_metrics["ddim_steps"],
    }
    assert torch.equal(
        torch.cat(list(sample_chunks(tmp_path))), first_samples(art["samples"], 5)
    )  # chunking changes nothing


def test_sample_stage__holds_the_samplers_images_in_draw_order_and_a_grid_of_the_first(chain):
    cfg, art, _, _ = chain
    stored = torch.cat(list(sample_chunks(art["samples"])))
    assert torch.equal(stored, torch.cat(_drawn_directly(cfg, art)))  # one seed, one set of samples
    with Image.open(art["samples"] / "samples.png") as grid:
        assert grid.size == (2 * 34 + 2, 2 * 34 + 2)
    sidecar = read_sidecar(art["samples"])
    assert sidecar["stage"] == "sample" and sidecar["upstream"]["ddim"]["stage"] == "ddim"
    assert json.loads((art["samples"] / "metrics.json").read_text())["sample_pixel_mean"] == pytest.approx(
        float(stored.double().mean() / 255), rel=1e-12
    )


def test_sample_stage__runs_in_float32_whatever_the_training_precision(chain, tmp_path):
    cfg, art, _, _ = chain
    bf16 = cfg.model_copy(deep=True)
    bf16.runtime.precision = "bf16"  # autocast on the CPU would round the UNet to bfloat16
    run_stage("sample", bf16, _sampler_inputs(art), {"samples": tmp_path})
    assert torch.equal(first_samples(tmp_path, 5), first_samples(art["samples"], 5))


def test_figures_stage__writes_every_figure_at_its_size_without_sampling(chain, tmp_path, monkeypatch):
    cfg, art, _, _ = chain

    def no_sampling(*args, **kwargs):
        raise AssertionError("the figures stage sampled instead of reading the samples artifact")

    monkeypatch.setattr(hybridmi.train.ddim, "sample_latents", no_sampling)
    monkeypatch.setattr(hybridmi.train.sampling, "sample_latents", no_sampling)
    metrics = run_stage("figures", cfg, {k: art[k] for k in FIGURES_INPUTS}, {"figures": tmp_path})
    for part in ("z", "y", "yhat"):
        with Image.open(tmp_path / f"interp_{part}.png") as image:
            assert image.size == (3 * 34 + 2, 2 * 34 + 2)  # rows = 2 pairs, columns = 3 weights
        assert metrics[f"interp_{part}_pixel_change"] >= 0
    with Image.open(tmp_path / "reconstructions.png") as image:
        assert image.size == (4 * 34 + 2, 34 + 2)
    with Image.open(tmp_path / "samples.png") as image:
        assert image.size == (2 * 34 + 2, 2 * 34 + 2)
    assert (tmp_path / "samples.png").read_bytes() == (
        art["samples"] / "samples.png"
    ).read_bytes()  # the artifact's images
    assert (tmp_path / "curve_ddim_loss.png").is_file()  # from the ddim's history.json
    assert not (tmp_path / "curve_loss.png").exists()  # the chain's model was never trained: no history


def test_fid_stage__reports_fid_with_its_sample_count_and_caches_reference(fid_run, random_weights):
    metrics, out = fid_run
    assert metrics["fid_num_samples"] == 5.0 and metrics["fid_reference_count"] == 10.0
    assert metrics["fid"] == metrics["fid"] and metrics["fid"] >= 0  # finite, non-negative
    assert len(list((random_weights / "fid-cache").glob("fid-*-all.npz"))) == 1
    assert json.loads((out / "metrics.json").read_text())["fid"] == metrics["fid"]


def test_fid_stage__records_its_protocol_and_where_its_inputs_came_from(fid_run, chain):
    _, out = fid_run
    _, art, _, _ = chain
    sidecar = read_sidecar(out)
    protocol = sidecar["fid_protocol"]
    assert protocol["num_samples"] == 5 and protocol["reference_split"] == "test" and protocol["reference_count"] == 10
    assert protocol["reference_subset_seed"] is None and protocol["weights_record"] is None  # random weights: no record
    assert protocol["weights_sha256"] == load_inception(device="cpu").weights_sha256
    assert protocol["sampling"] == read_index(art["samples"])["sampler"]  # the settings that drew the samples
    dataset = read_sidecar(art["dataset"])
    assert sidecar["upstream"]["dataset"]["dataset_checksum"] == dataset["dataset_checksum"]
    assert sidecar["upstream"]["samples"]["stage"] == "sample"
    assert (
        sidecar["upstream"]["ddim"]["stage"] == "ddim" and sidecar["upstream"]["ddim"]["seconds"] > 0
    )  # via the samples
    assert sidecar["seconds"] > 0


def test_fid_stage__equals_the_fid_of_the_stored_images_computed_directly(chain, fid_run, random_weights):
    _, art, _, _ = chain
    metrics, _ = fid_run
    saved = torch.cat(
        [torch.load(art["samples"] / c["file"], weights_only=True) for c in read_index(art["samples"])["chunks"]]
    )
    inception = load_inception(device="cpu")
    _, test = load_dataset(art["dataset"])
    reference = reference_statistics(
        test.images, checksum=test.checksum, model=inception, cache_dir=random_weights / "fid-cache", batch_size=4
    )
    expected = frechet_distance(*activation_statistics(uint8_batches(saved, 4), inception), *reference)
    assert metrics["fid"] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_fid_stage__reconstruction_fid_scores_as_many_test_images_encoded_decoded_and_rounded(
    chain, random_weights, tmp_path, monkeypatch
):
    """Reconstruction FID: N test images (N = the sample count, a seeded subset), through the trained autoencoder,
    rounded to uint8, against the same reference statistics as the sample FID."""
    cfg, art, _, _ = chain
    seen: list[torch.Tensor] = []
    scores: list[tuple] = []

    def recording(batches, model):
        seen.append(torch.cat(list(batches)))
        return activation_statistics(iter([seen[-1]]), model)

    def distance(*stats):
        scores.append(stats)
        return float(len(scores))

    monkeypatch.setattr("hybridmi.stages.fid.frechet.activation_statistics", recording)
    monkeypatch.setattr("hybridmi.stages.fid.frechet.frechet_distance", distance)
    metrics = run_stage("fid", cfg, {k: art[k] for k in ("samples", "dataset", "model")}, {"metrics": tmp_path})
    _, test = load_dataset(art["dataset"])
    model = load_autoencoder(art["model"] / "model.pt")
    num = int(metrics["fid_num_samples"])
    chosen = test.images[reference_subset(len(test.labels), num, seed=cfg.fid.reference_seed)]
    with torch.no_grad():
        decoded = to_uint8(model.decode(model.encode(chosen.float() / 255)).clamp(0, 1)).float() / 255
    assert num < len(test.labels) and metrics["recon_fid_num_images"] == num
    torch.testing.assert_close(seen[-1], decoded, rtol=0, atol=0)  # the last statistics are the reconstructions'
    assert (metrics["fid"], metrics["recon_fid"]) == (1.0, 2.0)  # sample FID first, then reconstruction FID
    assert scores[0][2] is scores[1][2] and scores[0][3] is scores[1][3]  # the same reference statistics
    assert "encoded and decoded" in read_sidecar(tmp_path)["fid_protocol"]["reconstructions"]


def test_fid_stage__equals_the_fid_of_samples_decoded_and_rounded_on_the_fly(chain, fid_run, random_weights):
    """The FID of the stored samples is the number the stage gave when it drew them itself: decoded, rounded to
    uint8 and back, re-cut into Inception batches of fid.batch_size."""
    cfg, art, _, _ = chain
    metrics, _ = fid_run
    inception = load_inception(device="cpu")
    _, test = load_dataset(art["dataset"])
    reference = reference_statistics(
        test.images,
        checksum=test.checksum,
        model=inception,
        cache_dir=random_weights / "fid-cache",
        batch_size=cfg.fid.batch_size,
    )
    floats = (b.float().div_(255.0) for b in _drawn_directly(cfg, art))
    stats = activation_statistics(rebatch(floats, cfg.fid.batch_size), inception)
    assert metrics["fid"] == frechet_distance(*stats, *reference)


def test_fid_stage__a_random_reference_subset_is_cached_apart_and_recorded(chain, random_weights, tmp_path):
    cfg, art, _, _ = chain
    subset = cfg.model_copy(deep=True)
    subset.fid.reference_samples, subset.fid.reference_seed = 6, 3
    metrics = run_stage("fid", subset, {k: art[k] for k in ("samples", "dataset", "model")}, {"metrics": tmp_path})
    assert metrics["fid_reference_count"] == 6.0
    assert read_sidecar(tmp_path)["fid_protocol"]["reference_subset_seed"] == 3
    assert len(list((random_weights / "fid-cache").glob("fid-*-n6s3.npz"))) == 1


@pytest.mark.parametrize(
    ("field", "value", "named"), [("steps", 4, "steps 5 (config: 4)"), ("num_samples", 6, "num_samples 5 (config: 6)")]
)
def test_fid_and_figures__refuse_samples_drawn_with_other_sampling_settings(
    chain, random_weights, tmp_path, field, value, named
):
    cfg, art, _, _ = chain
    other = cfg.model_copy(deep=True)
    setattr(other.sampling, field, value)
    with pytest.raises(ValueError, match=re.escape(f"other sampling settings: {named}")):
        run_stage("fid", other, {k: art[k] for k in ("samples", "dataset", "model")}, {"metrics": tmp_path / "m"})
    with pytest.raises(ValueError, match=re.escape(f"other sampling settings: {named}")):
        run_stage("figures", other, {k: art[k] for k in FIGURES_INPUTS}, {"figures": tmp_path / "f"})


def test_fid_stage__a_chunk_that_differs_from_its_index_is_refused(chain, random_weights, tmp_path):
    cfg, art, _, _ = chain
    copy = shutil.copytree(art["samples"], tmp_path / "samples")
    first = read_index(copy)["chunks"][0]["file"]
    torch.save(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), copy / first)
    with pytest.raises(ValueError, match=f"{first}: sha256 differs from the index {INDEX}"):
        run_stage(
            "fid", cfg, {"samples": copy, "dataset": art["dataset"], "model": art["model"]}, {"metrics": tmp_path / "m"}
        )


def test_fid_stage__missing_weights_fail_before_reading_samples(chain, tmp_path, monkeypatch):
    cfg, art, _, _ = chain
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{WEIGHTS_FILE}.*hybridmi fid-weights"):
        run_stage("fid", cfg, {k: art[k] for k in ("samples", "dataset", "model")}, {"metrics": tmp_path / "m"})
