"""bench/flops.py: FLOPs counted with known answers (depthwise backward included) and per image."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.flops import conv_backward_flops, image_flops, preset


def test_conv_backward__counts_a_depthwise_convolution_like_its_forward_per_gradient():
    conv = nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    forward = 2 * (2 * 8 * 16 * 16) * 25  # 2 FLOPs per multiply-add; each output sums one channel's 5x5 window
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) as c:
        conv(x).sum().backward()
    assert c.get_total_flops() == forward + 2 * forward  # grad input + grad weight


def test_image_flops__do_not_depend_on_the_batch_and_split_as_expected():
    cfg = preset("smoke")
    per_image = image_flops(cfg, count_batch=16)
    assert per_image == pytest.approx(image_flops(cfg, count_batch=32), rel=1e-6)
    ae_only = image_flops(preset("smoke", ["objective.alpha=1.0"]), count_batch=16)
    contrastive = image_flops(preset("smoke", ["objective.alpha=0.0"]), count_batch=16)
    assert ae_only < contrastive < per_image  # one view vs two views' encoder and keys vs both
