"""The shared test helpers themselves (helpers.py)."""

import pytest
import torch

from gradnap.engine import Window
from helpers import expand


def test_expand_places_windows():
    grads = torch.tensor([[[0.0, 1.0, 2.0]], [[3.0, 4.0, 0.0]]])
    full = expand(Window(grads, torch.tensor([-1, 3])), 5)
    assert full.tolist() == [[[1.0, 2.0, 0, 0, 0]], [[0, 0, 0, 3.0, 4.0]]]
    with pytest.raises(AssertionError, match="outside"):
        expand(Window(grads, torch.tensor([0, 4])), 5)
