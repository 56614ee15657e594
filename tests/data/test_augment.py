"""MoCo-v2 augmentation: per-sample, in range, reproducible from the generator, torchvision semantics."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from hybridmi.data.augment import (
    apply_flips,
    apply_moco,
    color_jitter,
    crop_boxes,
    draw_flips,
    draw_moco_params,
    resized_crop,
    to_float,
)


def _images(b: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 32, 32, generator=g)


def moco_views(x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """One MoCo-v2 view per image, as the trainer makes them: draw the batch's parameters, apply them."""
    return apply_moco(x, draw_moco_params(x.shape[0], x.shape[-1], generator=generator, device=x.device))


def test_moco_views__identical_inputs_get_different_views_in_unit_range():
    x = _images(1).expand(32, -1, -1, -1).contiguous()
    out = moco_views(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    flat = out.flatten(1)
    distinct = torch.cdist(flat, flat) + torch.eye(32) * 1e9
    assert distinct.min() > 1e-3  # every pair of views differs


def test_moco_views__same_generator_seed_same_output_other_seed_differs():
    x = _images()
    a = moco_views(x, generator=torch.Generator().manual_seed(5))
    b = moco_views(x, generator=torch.Generator().manual_seed(5))
    c = moco_views(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_moco_views__resuming_from_a_saved_generator_state_is_bit_identical():
    x = _images()
    g = torch.Generator().manual_seed(1)
    moco_views(x, generator=g)
    state = g.get_state()
    expected = moco_views(x, generator=g)
    resumed = torch.Generator()
    resumed.set_state(state)
    assert torch.equal(moco_views(x, generator=resumed), expected)


def test_moco_views__grayscale_probability_is_about_one_fifth():
    x = _images(600)
    out = moco_views(x, generator=torch.Generator().manual_seed(2))
    gray = ((out[:, 0] - out[:, 1]).abs().amax((1, 2)) < 1e-6) & ((out[:, 1] - out[:, 2]).abs().amax((1, 2)) < 1e-6)
    assert 0.14 < gray.float().mean().item() < 0.26


def test_crop_boxes__follow_scale_ratio_and_bounds():
    boxes = crop_boxes(4000, 32, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = h * w / 1024
    assert area.min() > 0.2 * 0.8 and area.max() <= 1.0  # rounding to whole pixels moves the area a little
    ratio = w / h
    assert ratio.min() > 0.75 * 0.85 and ratio.max() < 4 / 3 / 0.85
    assert 0.5 < area.mean().item() < 0.7  # uniform scale in [0.2, 1] has mean 0.6
    assert boxes.unique(dim=0).shape[0] > 500  # per-sample boxes


def test_resized_crop__equals_torchvision_resized_crop_and_flip():
    x = _images(3)
    boxes = torch.tensor([[0.0, 0, 32, 32], [3, 5, 20, 17], [10, 0, 22, 32]])
    out = resized_crop(x, boxes, torch.tensor([False, False, True]))
    assert torch.equal(out[0], x[0])
    expected = TF.resized_crop(x[1], 3, 5, 20, 17, [32, 32], antialias=False)
    assert torch.allclose(out[1], expected, atol=1e-5)
    expected = TF.resized_crop(x[2], 10, 0, 22, 32, [32, 32], antialias=False).flip(-1)
    assert torch.allclose(out[2], expected, atol=1e-5)


def test_color_jitter__equals_torchvision_adjust_functions_per_sample():
    x = _images(6)
    x[0] = x[0, :1]  # a grey image: hue undefined, saturation 0
    factors = torch.tensor(
        [
            [0.6, 1.4, 0.6, 0.1],
            [1.4, 0.6, 1.4, -0.1],
            [1.0, 1.0, 1.0, 0.0],
            [0.8, 1.2, 0.9, 0.05],
            [1.3, 0.7, 1.1, -0.03],
            [0.9, 0.9, 1.3, 0.07],
        ]
    )
    out = color_jitter(x, factors)
    for image, (b, c, s, h), got in zip(x, factors.tolist(), out):
        expected = TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(image, b), c), s), h)
        assert torch.allclose(got, expected, atol=1e-5)


def test_to_float__maps_uint8_to_unit_interval_and_refuses_floats():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_float(x), torch.tensor([0.0, 0.2, 1.0]))
    with pytest.raises(ValueError, match="uint8"):
        to_float(x.float())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_moco_views__runs_on_cuda_with_a_cuda_generator_reproducibly():
    x = _images(64).cuda()
    a = moco_views(x, generator=torch.Generator("cuda").manual_seed(0))
    b = moco_views(x, generator=torch.Generator("cuda").manual_seed(0))
    assert a.device == x.device and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert math.isfinite(moco_views(x.bfloat16(), generator=torch.Generator("cuda")).float().sum().item())


def test_flips__mirror_about_half_of_the_images_and_change_nothing_else():
    x = torch.rand(400, 3, 8, 8)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    out = apply_flips(x, draw_flips(400, generator=g(), device=x.device))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    assert all(torch.equal(o, i) or f for o, i, f in zip(out, x, flipped))
    assert 150 < int(flipped.sum()) < 250
    assert torch.equal(out, apply_flips(x, draw_flips(400, generator=g(), device=x.device)))
