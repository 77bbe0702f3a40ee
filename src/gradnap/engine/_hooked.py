"""What the engines that run the model itself (with hooks on its layers) share: the
checked layers, output kind and target, the chain kept for its geometry, the device and
dtype of the weights, and what the model declares about its layers.

A model may declare (as :class:`gradnap.asr.hf.HFCTCModel` does):

- ``time_major``: names of modules whose output is ``(B, T, C)`` (presented as
  ``(C, T)``);
- ``layer_info``: the modules that are layers of positions (others, such as weight
  parametrizations, are refused as layers);
- ``pointwise_after``: a module name, or several, whose outputs carry all of the
  output's dependence on the layers below, each at the output frame's own position: the
  sensitivity of output frame ``tau`` with respect to them, and to every module that
  finishes after the last of them, is non-zero at position ``tau`` alone. With several,
  the first is kept in the graph and the others are cut from it for the head (e.g. a
  transformer's last encoder layer's input, the residual stream, and its attention
  output);
- ``window_layout(layers)``: window widths, jumps and the output clock for the collector
  (:meth:`HookedEngine.layout`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradnap.defaults import METHOD
from gradnap.engine._chain import Chain
from gradnap.engine._layers import check_layers, check_target, output_kind
from gradnap.engine.base import INPUT_LAYER
from gradnap.errors import GradnapError


class HookedEngine:
    """Base of :class:`~gradnap.engine._autograd.AutogradEngine` and
    :class:`~gradnap.engine._reference.ReferenceEngine` (the model is put in eval mode)."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        target: str = METHOD.target,
        output: str | None = None,
        chain: Chain | None = None,
    ) -> None:
        model.eval()
        self.model = model
        self.layers = check_layers(model, layers)
        info = getattr(model, "layer_info", None)
        if isinstance(info, dict):
            bad = [n for n in self.layers if n != INPUT_LAYER and n not in info]
            if bad:
                raise GradnapError(
                    f"layers: {', '.join(map(repr, bad))} output no sequence of positions "
                    f"(weights, attention maps, or modules that do not run)"
                )
        self.output = output_kind(model, output)
        check_target(target, self.output)
        self.target = target
        #: The model as a Conv1d chain when it is one (not used for the gradients; its
        #: geometry gives the collector cone widths and t* search ranges), else ``None``.
        self.chain = chain
        #: Modules whose output is time-major ``(B, T, C)`` (declared by the model).
        self.time_major = frozenset(getattr(model, "time_major", ()))
        #: The modules above which the model is position-wise (declared; empty: none).
        declared = getattr(model, "pointwise_after", None) or ()
        self.pointwise_after: tuple[str, ...] = (
            (declared,) if isinstance(declared, str) else tuple(declared)
        )
        p = next(model.parameters(), None)
        self._device = p.device if p is not None else torch.device("cpu")
        self._dtype = p.dtype if p is not None else torch.float32

    def layout(
        self, layers: Sequence[str]
    ) -> tuple[dict[str, tuple[int, float]], tuple[float, float]] | None:
        """Window width and jump (input frames per position) of each of ``layers`` and the
        output clock ``(stride, offset)`` in input frames, when the model declares them
        (``model.window_layout``: models without a finite cone, docs/method.md §1.3);
        ``None`` otherwise (the collector then uses the chain or estimates them)."""
        declared = getattr(self.model, "window_layout", None)
        return declared(list(layers)) if callable(declared) else None
