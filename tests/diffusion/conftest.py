import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The sampler tests loop over many tiny tensors: intra-op threads only add synchronisation cost."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
