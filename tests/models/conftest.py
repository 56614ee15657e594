"""Model tests run torch on one intra-op thread: on a few busy shared cores, threads that fight other
processes make these small steps many times slower (measured ~30x), and the results do not change."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
