"""SplitBatchNorm2d: BatchNorm over contiguous groups of a batch in one pass."""

import pytest
import torch
from torch import nn

from hybridmi.models.norm import SplitBatchNorm2d


def _pair(channels=3, group_size=4):
    torch.manual_seed(0)
    split = SplitBatchNorm2d(channels, group_size=group_size)
    plain = nn.BatchNorm2d(channels)
    with torch.no_grad():
        split.weight.uniform_(0.5, 1.5)
        split.bias.uniform_(-0.5, 0.5)
    plain.load_state_dict(split.state_dict())
    return split, plain


def test_split_bn__equals_plain_batchnorm_on_each_group_alone():
    split, plain = _pair(group_size=4)
    x = torch.randn(12, 3, 5, 5) * 3 + 1
    y = split.train()(x)
    groups, means, variances = [], [], []
    for part in x.split(4):
        alone = nn.BatchNorm2d(3)
        alone.load_state_dict(plain.state_dict())
        groups.append(alone.train()(part))
        means.append(alone.running_mean)
        variances.append(alone.running_var)
    torch.testing.assert_close(y, torch.cat(groups), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(split.running_mean, torch.stack(means).mean(0))  # mean of the groups' updates
    torch.testing.assert_close(split.running_var, torch.stack(variances).mean(0))
    assert int(split.num_batches_tracked) == 1


def test_split_bn__one_group_or_none_is_exactly_batchnorm_and_eval_uses_running_stats():
    x = torch.randn(8, 3, 4, 4)
    for group in (None, 8):
        split, plain = _pair(group_size=4)
        split.group_size = group
        assert torch.equal(split.train()(x), plain.train()(x))
        assert torch.equal(split.running_var, plain.running_var)
    split, plain = _pair(group_size=4)
    split.train()(x)
    plain.load_state_dict(split.state_dict())
    x_eval = torch.randn(5, 3, 4, 4)  # any batch size in eval mode
    assert torch.equal(split.eval()(x_eval), plain.eval()(x_eval))


def test_split_bn__keeps_channels_last_and_gives_the_same_values():
    split, _ = _pair(channels=6, group_size=2)
    x = torch.randn(8, 6, 4, 4)
    y = split.train()(x)
    y_cl = split(x.contiguous(memory_format=torch.channels_last))
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_cl, y)


def test_split_bn__gradients_match_per_group_batchnorm():
    split, plain = _pair(group_size=3)
    x = torch.randn(6, 3, 4, 4, requires_grad=True)
    (split.train()(x) ** 3).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    plain.train()
    (torch.cat([plain(part) for part in x_ref.split(3)]) ** 3).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(split.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)


def test_split_bn__rejects_a_batch_that_does_not_split_and_tiny_groups():
    split, _ = _pair(group_size=4)
    with pytest.raises(ValueError, match="batch of 6 is not a multiple of the BN group size 4"):
        split.train()(torch.randn(6, 3, 2, 2))
    with pytest.raises(ValueError, match="group_size 1 must be >= 2"):
        SplitBatchNorm2d(3, group_size=1)
