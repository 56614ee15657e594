"""MSE in the paper's unit: Σ over the 3072 values of (x̂ − x)², averaged over images."""

import math

import pytest
import torch
from torch import nn

from hybridmi.data.prepared import Split, content_checksum
from hybridmi.eval.reconstruction import psnr_from_mse, reconstruction_metrics, squared_error_per_image


def test_squared_error__matches_hand_computed_example():
    x = torch.zeros(2, 3, 32, 32)
    x_hat = x.clone()
    x_hat[0] += 0.1  # 3072 values off by 0.1 → 3072 · 0.01 = 30.72
    x_hat[1, 0, 0, 0] = 0.5  # one value off by 0.5 → 0.25
    assert squared_error_per_image(x_hat, x).tolist() == pytest.approx([30.72, 0.25], rel=1e-5)


def test_psnr__paper_mse_is_about_30_7_db():
    assert psnr_from_mse(2.6) == pytest.approx(30.7, abs=0.05)
    assert math.isinf(psnr_from_mse(0.0))


class _Identity(nn.Module):
    def encode(self, x):
        return x

    def decode(self, z):
        return z


class _Constant(_Identity):
    def decode(self, z):
        return torch.full_like(z, 0.5)


def _split(images: torch.Tensor) -> Split:
    labels = torch.zeros(len(images), dtype=torch.int64)
    return Split(images=images, labels=labels, classes=["a"], checksum=content_checksum(images, labels))


def test_identity_autoencoder__has_mse_zero():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    metrics = reconstruction_metrics(_Identity(), _split(images), batch_size=2, device=torch.device("cpu"))
    assert metrics["mse"] == 0.0 and metrics["num_images"] == 5


def test_constant_decoder__mse_of_black_images_is_3072_quarters():
    images = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    metrics = reconstruction_metrics(_Constant(), _split(images), batch_size=2, device=torch.device("cpu"))
    assert metrics["mse"] == pytest.approx(3072 * 0.25)
