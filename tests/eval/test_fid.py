"""FID code paths: the Fréchet distance with known answers, streaming statistics, the cache, weight loading.

These use randomly initialised Inception weights: they test code paths, never FID values. The tests
with the real weights (converted from the registry) are in test_fid_real.py.
"""

import hashlib
import json

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from hybridmi.eval.fid import (
    WEIGHTS_FILE,
    FIDInceptionV3,
    activation_statistics,
    default_weights_path,
    frechet_distance,
    load_inception,
    record_path,
    reference_statistics,
    reference_subset,
    uint8_batches,
)


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds randomly initialised FID Inception weights (code path only)."""
    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(0)
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(FIDInceptionV3().net.state_dict(), home / "hub" / "checkpoints" / WEIGHTS_FILE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def inception(torch_home):
    return load_inception(device="cpu")


def random_stats(d, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    return rng.normal(size=d), a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance__agrees_with_pytorch_fid():
    (mu1, s1), (mu2, s2) = random_stats(16, 0), random_stats(16, 1)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-9)


def test_frechet_distance__agrees_with_pytorch_fid_on_low_rank_sample_statistics():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(40, 64)), rng.normal(loc=0.3, size=(40, 64))  # 40 samples of 64-d features
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    ours = frechet_distance(*stats[0], *stats[1])
    assert ours == pytest.approx(calculate_frechet_distance(*stats[0], *stats[1]), rel=1e-6)


def test_frechet_distance__zero_for_identical_statistics():
    mu, sigma = random_stats(32, 2)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_frechet_distance__equal_covariances_give_squared_mean_distance():
    mu1, sigma = random_stats(8, 3)
    mu2 = mu1 + np.arange(8.0)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(np.sum(np.arange(8.0) ** 2)), rel=1e-7)


def test_frechet_distance__rejects_mismatched_shapes():
    mu, sigma = random_stats(4, 0)
    with pytest.raises(ValueError, match=r"mu \(4,\) vs \(3,\)"):
        frechet_distance(mu, sigma, mu[:3], sigma[:3, :3])


def test_load_inception__missing_weights_name_the_file_and_the_command_that_makes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE
    assert default_weights_path() == expected
    with pytest.raises(FileNotFoundError, match=f"{expected}.*hybridmi fid-weights") as missing:
        load_inception(device="cpu")
    assert "\n" not in str(missing.value)
    with pytest.raises(FileNotFoundError, match="elsewhere.pth"):
        load_inception(weights_path=tmp_path / "elsewhere.pth", device="cpu")
    assert not expected.exists()


def test_load_inception__refuses_a_file_whose_hash_differs_from_its_record(tmp_path):
    path = tmp_path / WEIGHTS_FILE
    torch.save(FIDInceptionV3().net.state_dict(), path)
    record_path(path).write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(ValueError, match=f"checksum mismatch: {path}.*hybridmi fid-weights"):
        load_inception(weights_path=path, device="cpu")


def test_load_inception__keeps_the_hash_and_record_of_the_file(tmp_path):
    path = tmp_path / WEIGHTS_FILE
    torch.save(FIDInceptionV3().net.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_inception(weights_path=path, device="cpu").weights_record is None
    record_path(path).write_text(json.dumps({"sha256": digest, "source": "test"}))
    model = load_inception(weights_path=path, device="cpu")
    assert model.weights_sha256 == digest and model.weights_record == {"sha256": digest, "source": "test"}


def test_activation_statistics__streamed_equals_numpy_mean_and_cov(inception):
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mu, sigma = activation_statistics(uint8_batches(x, 2), inception)
    with torch.no_grad():
        feats = inception(x.float() / 255).double().numpy()
    assert np.allclose(mu, feats.mean(0), rtol=1e-6, atol=1e-9)
    assert np.allclose(sigma, np.cov(feats, rowvar=False), rtol=1e-5, atol=1e-9)


def test_reference_statistics__cached_by_checksum_weights_and_subset(tmp_path, inception):
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    mu, sigma = reference_statistics(x, checksum="c0ffee", model=inception, cache_dir=tmp_path, batch_size=2)
    (cached,) = tmp_path.glob("fid-c0ffee-*-all.npz")
    assert inception.weights_sha256[:16] in cached.name
    np.savez(cached, mu=mu + 1, sigma=sigma, count=np.int64(3))  # a marker only the cache can return
    mu2, _ = reference_statistics(x, checksum="c0ffee", model=inception, cache_dir=tmp_path, batch_size=2)
    assert np.allclose(mu2, mu + 1)
    mu3, _ = reference_statistics(x, checksum="beef", model=inception, cache_dir=tmp_path, batch_size=2)
    assert np.allclose(mu3, mu) and len(list(tmp_path.glob("*.npz"))) == 2
    reference_statistics(x, checksum="c0ffee", model=inception, cache_dir=tmp_path, batch_size=2, num=2, seed=5)
    assert (tmp_path / cached.name.replace("-all.npz", "-n2s5.npz")).is_file()


def test_reference_subset__is_seeded_random_and_not_the_first_images():
    a = reference_subset(1000, 100, seed=0)
    assert torch.equal(a, reference_subset(1000, 100, seed=0)) and not torch.equal(
        a, reference_subset(1000, 100, seed=1)
    )
    assert len(a.unique()) == 100 and a.max() >= 500  # spread over the split, not its first 100
    assert reference_subset(1000, 0, seed=0) is None and reference_subset(10, 10, seed=0) is None
    with pytest.raises(ValueError, match="-1"):
        reference_subset(10, -1, seed=0)


def test_activation_statistics__rejects_uint8_batches_and_single_images(inception):
    with pytest.raises(ValueError, match="uint8"):
        activation_statistics([torch.zeros(2, 3, 8, 8, dtype=torch.uint8)], inception)
    with pytest.raises(ValueError, match="at least 2 images, got 1"):
        activation_statistics([torch.rand(1, 3, 8, 8)], inception)
