import pytest
import torch

from hybridmi.eval.latents import (
    LatentSet,
    channel_stats,
    destandardise,
    extract_latents,
    load_latents,
    load_stats,
    save_latents,
    save_stats,
    standardise,
)
from hybridmi.models.autoencoder import Autoencoder


@pytest.fixture(scope="module")
def autoencoder():
    torch.manual_seed(0)
    return Autoencoder(channels=4, cells_32=0, cells_16=0, decoder_expand=1, latent_channels=6).eval()


def images(n, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class CountingImages:
    """A uint8 image source that records the largest slice ever taken from it."""

    def __init__(self, data):
        self.data, self.largest = data, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        chunk = self.data[index]
        self.largest = max(self.largest, len(chunk))
        return chunk


class CountingEncoder:
    def __init__(self, model):
        self.model, self.largest, self.calls = model, 0, 0

    def encode(self, x):
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        self.largest, self.calls = max(self.largest, len(x)), self.calls + 1
        return self.model.encode(x)


def test_standardise__round_trips_and_whitens_each_channel():
    z = torch.randn(50, 3, 4, 4) * torch.tensor([1.0, 5.0, 0.1])[None, :, None, None] + 7
    mean, std = channel_stats(z, batch_size=7)
    s = standardise(z, mean, std)
    assert torch.allclose(s.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(s.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5)
    assert torch.allclose(destandardise(s, mean, std), z, atol=1e-5)


def test_channel_stats__streamed_equals_whole_tensor_float64():
    z = (torch.randn(101, 6, 16, 16) * 3 + 2).half()
    mean, std = channel_stats(z, batch_size=10)
    ref = z.double()
    assert torch.allclose(mean, ref.mean(dim=(0, 2, 3)), rtol=1e-12)
    assert torch.allclose(std, ref.std(dim=(0, 2, 3), unbiased=False), rtol=1e-9)
    assert mean.dtype == std.dtype == torch.float64


def test_channel_stats__rejects_constant_channel():
    with pytest.raises(ValueError, match=r"channels \[1\] are constant"):
        channel_stats(torch.stack([torch.randn(4, 2, 2), torch.ones(4, 2, 2)], dim=1))


def test_extract_latents__equals_encoding_with_flips_after_originals(autoencoder):
    x = images(10)
    z = extract_latents(autoencoder, x, batch_size=4, device=torch.device("cpu"), flip=True, dtype=torch.float32)
    with torch.no_grad():
        ref = autoencoder.encode(x.float() / 255)
        ref_flip = autoencoder.encode(x.float().flip(-1) / 255)
    assert z.shape == (20, 6, 16, 16) and z.dtype == torch.float32
    assert torch.allclose(z[:10], ref, atol=1e-5) and torch.allclose(z[10:], ref_flip, atol=1e-5)


def test_extract_latents__streams_in_batches_whatever_n(autoencoder):
    for n in (100, 700):
        source, encoder = CountingImages(images(n, seed=n)), CountingEncoder(autoencoder)
        z = extract_latents(encoder, source, batch_size=64, device=torch.device("cpu"), flip=True)
        assert z.shape == (2 * n, 6, 16, 16) and z.dtype == torch.float16
        assert source.largest == 64 and encoder.largest == 64  # never more than one batch as float
        assert encoder.calls == 2 * -(-n // 64)


def test_extract_latents__rejects_float_images(autoencoder):
    with pytest.raises(ValueError, match="uint8"):
        extract_latents(autoencoder, torch.rand(2, 3, 32, 32), batch_size=2, device=torch.device("cpu"))


def test_latent_files__round_trip(tmp_path):
    z, labels = torch.randn(6, 6, 16, 16).half(), torch.arange(6)
    save_latents(tmp_path / "train.pt", LatentSet(latents=z, labels=labels, flip=True, source_checksum="abc"))
    back = load_latents(tmp_path / "train.pt")
    assert (
        torch.equal(back.latents, z)
        and torch.equal(back.labels, labels)
        and back.flip
        and back.source_checksum == "abc"
    )
    mean, std = torch.rand(6, dtype=torch.float64), torch.rand(6, dtype=torch.float64) + 0.1
    save_stats(tmp_path / "stats.json", mean, std, count=6)
    m2, s2 = load_stats(tmp_path / "stats.json")
    assert torch.equal(m2, mean) and torch.equal(s2, std)  # exact through JSON
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_latents(tmp_path / "missing.pt")
