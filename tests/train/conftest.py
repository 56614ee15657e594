import pytest

from hybridmi.config import load_config
from hybridmi.data.synthetic import make_synthetic


@pytest.fixture(scope="session")
def tiny_data():
    return make_synthetic(num_classes=4, n_train=128, n_test=64, seed=0)


@pytest.fixture
def tiny_cfg():
    """A model and run small enough for a few seconds on one CPU core."""
    return load_config(
        None,
        [
            "model.channels=8",
            "model.cells_32=0",
            "model.cells_16=1",
            "model.decoder_expand=2",
            "model.proj_hidden=32",
            "model.proj_dim=16",
            "objective.queue_size=64",
            "objective.temperature=0.2",
            "train.batch_size=16",
            "train.epochs=1",
            "runtime.device=cpu",
            "train.log_every=2",
            "train.checkpoint_every=4",
            "optim.warmup_epochs=0.25",
            "optim.lr=3e-3",
        ],
    )
