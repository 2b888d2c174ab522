"""Fixtures of the ML library's tests."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny networks run fastest on one thread, and the timings do not depend on the load."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
