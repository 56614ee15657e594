"""The pure loss functions against hand-computed values."""

import math

import pytest
import torch

from hybridmi.losses import hybrid_loss, info_nce, reconstruction_loss


def test_reconstruction_loss__sums_per_image_and_averages_over_batch():
    x = torch.zeros(2, 3, 32, 32)
    x_hat = x.clone()
    x_hat[0] += 0.1  # 3072 · 0.01 = 30.72
    x_hat[1] += 0.2  # 3072 · 0.04 = 122.88
    assert reconstruction_loss(x_hat, x).item() == pytest.approx((30.72 + 122.88) / 2, rel=1e-5)
    assert reconstruction_loss(x_hat[:1], x[:1]).item() == pytest.approx(30.72, rel=1e-5)


def test_reconstruction_loss__is_float32_for_bf16_inputs_and_zero_for_identity():
    x = torch.rand(3, 3, 32, 32).bfloat16()
    loss = reconstruction_loss(x, x)
    assert loss.dtype == torch.float32 and loss.item() == 0.0


def test_reconstruction_loss__rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\) and \(2, 3, 16, 16\)"):
        reconstruction_loss(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 16, 16))


def _hand_example():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    queue = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # columns (0, 1) and (-1, 0)
    # row 0: q·k = 1, q·n = (0, -1); row 1: q·k = 0.8, q·n = (1, 0); T = 0.5 doubles them
    row0 = -2.0 + math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-2.0))
    row1 = -1.6 + math.log(math.exp(1.6) + math.exp(2.0) + math.exp(0.0))
    return q, k, queue, (row0 + row1) / 2


def test_info_nce__matches_hand_computed_example():
    q, k, queue, expected = _hand_example()
    assert info_nce(q, k, queue, temperature=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce__is_log_of_candidates_when_all_logits_equal():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[0.0, 1.0]])
    queue = torch.zeros(2, 3)  # every logit is 0: the positive is one of 4 equal candidates
    assert info_nce(q, k, queue, temperature=0.1).item() == pytest.approx(math.log(4), rel=1e-6)


def test_info_nce__computes_in_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(16, 128, generator=g), dim=1)
    k = torch.nn.functional.normalize(torch.randn(16, 128, generator=g), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(128, 256, generator=g), dim=0)
    exact = info_nce(q, k, queue, temperature=0.07)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = info_nce(q, k, queue, temperature=0.07)
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(exact.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("q_shape", "k_shape", "queue_shape", "match"),
    [((4, 8), (4, 7), (8, 16), "equal"), ((4, 8), (4, 8), (7, 16), "D=8")],
)
def test_info_nce__rejects_bad_shapes(q_shape, k_shape, queue_shape, match):
    with pytest.raises(ValueError, match=match):
        info_nce(torch.zeros(q_shape), torch.zeros(k_shape), torch.zeros(queue_shape), temperature=0.1)


def test_info_nce__rejects_non_positive_temperature():
    q, k, queue, _ = _hand_example()
    with pytest.raises(ValueError, match="temperature 0"):
        info_nce(q, k, queue, temperature=0)


def test_hybrid_loss__mixes_terms_with_alpha():
    assert hybrid_loss(torch.tensor(4.0), torch.tensor(8.0), alpha=0.25).item() == pytest.approx(7.0)


def test_hybrid_loss__endpoints_return_the_pure_term_even_when_the_other_is_nan():
    recon, nce, nan = torch.tensor(3.0), torch.tensor(5.0), torch.tensor(float("nan"))
    assert hybrid_loss(recon, nce, alpha=1.0) is recon
    assert hybrid_loss(nan, nce, alpha=0.0) is nce
    assert hybrid_loss(recon, nan, alpha=1.0).item() == 3.0
    assert hybrid_loss(None, nce, alpha=0.0) is nce
    assert hybrid_loss(recon, None, alpha=1.0) is recon


@pytest.mark.parametrize(
    ("recon", "nce", "alpha", "match"),
    [
        (1.0, 1.0, 1.5, "alpha 1.5"),
        (1.0, 1.0, -0.1, "alpha -0.1"),
        (None, 1.0, 0.5, "reconstruction"),
        (1.0, None, 0.5, "InfoNCE"),
    ],
)
def test_hybrid_loss__rejects_bad_alpha_or_missing_term(recon, nce, alpha, match):
    wrap = lambda v: None if v is None else torch.tensor(v)  # noqa: E731
    with pytest.raises(ValueError, match=match):
        hybrid_loss(wrap(recon), wrap(nce), alpha=alpha)
