"""Which output frames are examples, and their predicted class (docs/method.md §1.1)."""

from __future__ import annotations

import logging

import torch

from gradnap.defaults import BLANK_INDEX
from gradnap.errors import GradnapError

__all__ = ["EXAMPLE_MODES", "select_examples"]

log = logging.getLogger(__name__)

#: Example selection modes (docs/method.md §1.1).
EXAMPLE_MODES = ("nonblank", "all", "first")


def select_examples(
    probs: torch.Tensor, mode: str = "nonblank", blank: int = BLANK_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Examples of one utterance from its output ``probs`` ``(K, T')``.

    The greedy prediction of frame ``tau`` is ``argmax_k probs[k, tau]`` (first maximum).
    ``mode``:

    * ``"nonblank"``: every frame whose prediction is not ``blank``;
    * ``"all"``: every frame;
    * ``"first"``: the first frame of each run of equal non-blank predictions (a blank
      between two equal predictions starts a new run, as in CTC decoding).

    Returns ``(frames, classes)``, both ``(n,)`` int64, frames ascending.
    """
    if mode not in EXAMPLE_MODES:
        raise GradnapError(
            f"examples: unknown mode {mode!r}; choose from {', '.join(EXAMPLE_MODES)}"
        )
    pred = probs.argmax(dim=0)  # (T',)
    frames = torch.arange(pred.numel())
    if mode == "all":
        keep = torch.ones_like(pred, dtype=torch.bool)
    else:
        keep = pred != blank
        if mode == "first":
            prev = torch.cat([pred.new_full((1,), -1), pred[:-1]])
            keep &= pred != prev
    return frames[keep], pred[keep].to(torch.int64)
