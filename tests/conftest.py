"""Suite-wide settings: one torch thread (small tensors gain nothing from more, and lose a lot on a busy machine)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)
    yield
