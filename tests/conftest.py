"""Shared fixtures. The shared models, corpora and helpers are plain functions in helpers.py."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread (OpenMP threads only wait on a busy, shared machine).

    Modules that want it say ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
