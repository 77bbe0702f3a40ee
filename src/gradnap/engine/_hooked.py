"""What the engines that run the model itself (with hooks on its layers) share: the
checked layers, output kind and target, the chain kept for its geometry, and the device
and dtype of the weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradnap.defaults import METHOD
from gradnap.engine._chain import Chain
from gradnap.engine._layers import check_layers, check_target, output_kind


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
        self.output = output_kind(model, output)
        check_target(target, self.output)
        self.target = target
        #: The model as a Conv1d chain when it is one (not used for the gradients; its
        #: geometry gives the collector cone widths and t* search ranges), else ``None``.
        self.chain = chain
        p = next(model.parameters(), None)
        self._device = p.device if p is not None else torch.device("cpu")
        self._dtype = p.dtype if p is not None else torch.float32
