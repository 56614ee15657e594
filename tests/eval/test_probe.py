"""Linear probe and kNN monitor: known answers on separable and on structureless features."""

import torch

from hybridmi.eval.knn import knn_accuracy
from hybridmi.eval.probe import linear_probe, standardise


def _blobs(n_per_class: int, num_classes: int, dim: int, *, spread: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=gen) * 5
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centres[labels] + spread * torch.randn(len(labels), dim, generator=gen)
    return x, labels


def test_probe__separable_features_score_about_100_percent():
    x, y = _blobs(60, 4, 16, spread=0.5, seed=0)
    tx, ty = _blobs(30, 4, 16, spread=0.5, seed=0)  # same centres (same seed), fresh noise below
    tx = tx + 0.1 * torch.randn(tx.shape, generator=torch.Generator().manual_seed(1))
    result = linear_probe(x, y, tx, ty, num_classes=4, weight_decays=[0.0, 1e-3], epochs=30, batch_size=64, lr=0.05)
    assert result.accuracy > 0.98
    assert result.confusion.sum() == len(ty) and result.confusion.diag().sum() == round(result.accuracy * len(ty))
    assert set(result.val_accuracy) == {0.0, 1e-3}


def test_probe__random_labels_stay_near_chance():
    gen = torch.Generator().manual_seed(3)
    x, tx = torch.randn(400, 32, generator=gen), torch.randn(400, 32, generator=gen)
    y, ty = torch.randint(0, 4, (400,), generator=gen), torch.randint(0, 4, (400,), generator=gen)
    result = linear_probe(x, y, tx, ty, num_classes=4, weight_decays=[1e-3], epochs=20, batch_size=100)
    assert result.accuracy < 0.4


def test_standardise__uses_train_statistics():
    train = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
    a, b = standardise(train, torch.tensor([[1.0, 20.0]]))
    assert torch.allclose(a.mean(0), torch.zeros(2)) and torch.allclose(b, torch.zeros(1, 2))


def test_knn__separable_features_score_100_percent_and_k_is_capped():
    x, y = _blobs(20, 3, 8, spread=0.1, seed=5)
    assert knn_accuracy(x, y, x, y, num_classes=3, k=200) == 1.0


def test_probe__beats_chance_clearly_on_the_synthetic_set():
    from hybridmi.data.augment import to_float
    from hybridmi.data.synthetic import make_synthetic

    train, test = make_synthetic(num_classes=10, n_train=1000, n_test=300, seed=0)

    def features(split):  # 8x8 average-pooled pixels: a frozen, label-free representation
        return torch.nn.functional.avg_pool2d(to_float(split.images), 4).flatten(1)

    result = linear_probe(
        features(train),
        train.labels,
        features(test),
        test.labels,
        num_classes=10,
        weight_decays=[0.0, 1e-3],
        epochs=30,
        batch_size=128,
        lr=1e-2,
    )
    assert result.accuracy > 0.5  # chance is 0.1
