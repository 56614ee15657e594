import math

import pytest
import torch

from hybridmi.diffusion.schedule import alphas_cumprod, make_betas, timesteps


def test_linear_betas__endpoints_and_length():
    betas = make_betas("linear", 1000, beta_start=1e-4, beta_end=0.02)
    assert betas.shape == (1000,) and betas.dtype == torch.float64
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_alphas_cumprod__is_the_running_product():
    betas = torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64)
    assert torch.allclose(alphas_cumprod(betas), torch.tensor([0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.5], dtype=torch.float64))


def test_cosine_betas__alphas_follow_the_squared_cosine():
    abar = alphas_cumprod(make_betas("cosine", 1000))
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert abar[499].item() == pytest.approx(f(500) / f(0), rel=1e-9)
    assert bool((abar[1:] < abar[:-1]).all())


def test_make_betas__rejects_unknown_schedule():
    with pytest.raises(ValueError, match="'sigmoid'"):
        make_betas("sigmoid", 10)


def test_timesteps__uniform_matches_ddim_skips():
    assert timesteps(1000, 10, "uniform") == list(range(0, 1000, 100))
    assert timesteps(1000, 1000, "uniform") == list(range(1000))


def test_timesteps__quadratic_matches_ddim_and_stays_distinct():
    assert timesteps(1000, 10, "quadratic") == [int(800 * k * k / 81 + 1e-9) for k in range(10)]  # (k·sqrt(800)/9)²
    seq = timesteps(1000, 100, "quadratic")
    assert len(seq) == 100 and len(set(seq)) == 100 and seq == sorted(seq) and seq[-1] == 800


def test_timesteps__rejects_an_unknown_spacing():
    with pytest.raises(ValueError, match="'cubic'"):
        timesteps(1000, 10, "cubic")
