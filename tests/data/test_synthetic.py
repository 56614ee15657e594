"""The synthetic source has learnable class structure and is a pure function of its parameters."""

from __future__ import annotations

import torch

from hybridmi.data.synthetic import make_synthetic


def _nearest_class_mean_accuracy(train, test) -> float:
    x = train.images.float().flatten(1)
    means = torch.stack([x[train.labels == c].mean(0) for c in range(len(train.classes))])
    predicted = torch.cdist(test.images.float().flatten(1), means).argmin(1)
    return (predicted == test.labels).float().mean().item()


def test_make_synthetic__nearest_class_mean_on_pixels_beats_chance_widely():
    train, test = make_synthetic(num_classes=10, n_train=600, n_test=200, seed=3)
    assert _nearest_class_mean_accuracy(train, test) > 0.6  # chance is 0.1


def test_make_synthetic__same_seed_same_bytes_other_seed_other_bytes():
    a = make_synthetic(num_classes=5, n_train=50, n_test=20, seed=7)
    b = make_synthetic(num_classes=5, n_train=50, n_test=20, seed=7)
    c = make_synthetic(num_classes=5, n_train=50, n_test=20, seed=8)
    assert [s.checksum for s in a] == [s.checksum for s in b]
    assert a[0].checksum != c[0].checksum and a[1].checksum != c[1].checksum


def test_make_synthetic__sizes_balance_and_layout():
    train, test = make_synthetic(num_classes=4, n_train=42, n_test=10, seed=0)
    assert train.images.shape == (42, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.bincount(train.labels).tolist() == [11, 11, 10, 10]
    assert len(test) == 10 and train.classes == test.classes and len(train.classes) == 4
    assert train.images.float().std() > 20  # not blank: shapes on backgrounds
