"""The contract between the sensitivity engines and the profile accumulators.

An engine is built for one model and a list of layer names (``"input"`` is layer 0, the
spectrogram; other names are ``named_modules()`` names whose output is the layer's
post-activation ``A_l``). For one utterance:

1. :meth:`SensitivityEngine.forward` runs the model once without gradients and returns a
   :class:`ForwardPass` with every requested layer's activations and the output.
2. :meth:`SensitivityEngine.sensitivities` takes output frames ``tau`` (n,) and classes
   ``k`` (n,) and returns, per layer, a :class:`Window` of
   ``S_l(tau) = d target[k, tau] / d A_l`` restricted to positions
   ``start[i] .. start[i] + W - 1`` of that layer. Positions outside ``0 .. T_l - 1``
   (utterance padding) hold zeros. The cone engine returns cone-wide windows
   (``W = Geometry.cone_width(l)``, ``start = cone lo``); the generic autograd engine
   returns the whole layer (``W = T_l``, ``start = 0``).

Every engine has ``chain``: the model as a Conv1d chain when it is one (its geometry
gives the collector cone widths and the cone as the search range of ``t*``), else
``None``; engines made by :func:`gradnap.engine.make_engine` share the one extraction.

``target`` is ``"prob"`` (softmax probability, default), ``"logprob"`` or ``"logit"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = [
    "ForwardPass",
    "Window",
    "SensitivityEngine",
    "INPUT_LAYER",
    "TARGETS",
    "examples_major",
]

INPUT_LAYER = "input"
TARGETS = ("prob", "logprob", "logit")


@dataclass
class ForwardPass:
    """One utterance's forward pass."""

    #: layer name -> activations ``(C_l, T_l)`` (the input spectrogram ``(F, T)`` for "input").
    activations: dict[str, torch.Tensor]
    #: Softmax output ``(K, T')``.
    probs: torch.Tensor
    #: Engine-private state kept for :meth:`SensitivityEngine.sensitivities`.
    state: object = None


@dataclass
class Window:
    """Sensitivities of n target frames in one layer."""

    #: ``(n, C_l, W)``: gradient at positions ``start[i] + j``.
    grads: torch.Tensor
    #: ``(n,)`` int64: layer position of column 0 of each row (may be negative).
    start: torch.Tensor


def examples_major(grads: torch.Tensor) -> torch.Tensor:
    """Window grads ``(n, C, W)`` as a contiguous tensor. A view of a ``(C, W, n)`` buffer
    (frames innermost, the cone engine's layout) is copied as one 2-D transpose, about
    twice as fast as torch's copy of the 3-D permutation."""
    if grads.is_contiguous():
        return grads
    n, C, W = grads.shape
    inner = grads.permute(1, 2, 0)
    if inner.is_contiguous():
        return inner.view(C * W, n).T.contiguous().view(n, C, W)
    return grads.contiguous()


class SensitivityEngine(Protocol):
    layers: list[str]
    target: str
    #: The model's Conv1d chain (:class:`gradnap.engine.Chain`), or ``None``.
    chain: Any

    def forward(self, x: torch.Tensor) -> ForwardPass:
        """``x``: input spectrogram ``(F, T)``."""
        ...

    def sensitivities(
        self, fwd: ForwardPass, frames: torch.Tensor, classes: torch.Tensor
    ) -> dict[str, Window]:
        """``frames``, ``classes``: ``(n,)`` int64. Returns layer name -> :class:`Window`."""
        ...
