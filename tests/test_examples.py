import pytest
import torch

from gradnap.errors import GradnapError
from gradnap.method.examples import select_examples

B = 3  # blank index of the tiny 4-class outputs below


def probs_of(pred, k=4):
    """Softmax-like output (K, T') whose greedy prediction is ``pred``."""
    p = torch.full((k, len(pred)), 0.1)
    p[pred, torch.arange(len(pred))] = 0.7
    return p


def test_select_examples_modes():
    pred = [B, 0, 0, B, 0, 1, 1, B, 2]
    p = probs_of(pred)
    frames, classes = select_examples(p, "nonblank", blank=B)
    assert frames.tolist() == [1, 2, 4, 5, 6, 8]
    assert classes.tolist() == [0, 0, 0, 1, 1, 2]
    frames, classes = select_examples(p, "all", blank=B)
    assert frames.tolist() == list(range(9)) and classes.tolist() == pred
    # first of each run of equal non-blank predictions; a blank separates runs of "0"
    frames, classes = select_examples(p, "first", blank=B)
    assert frames.tolist() == [1, 4, 5, 8]
    assert classes.tolist() == [0, 0, 1, 2]


def test_select_examples_rejects_unknown_mode():
    with pytest.raises(GradnapError, match="nonblank"):
        select_examples(probs_of([0, 1]), "every")
