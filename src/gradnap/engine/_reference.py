"""The plain per-frame autograd reference (what a Captum user would write).

One forward pass with gradients, then for every target frame one full backward pass
(``torch.autograd.grad(target, layers, retain_graph=True)``). Slow and simple: the tests
and the benchmark measure the other engines against it. Windows cover whole layers
(time-major and tuple outputs as :func:`gradnap.engine._layers.capture` presents them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradnap.engine._hooked import HookedEngine
from gradnap.engine._layers import capture, target_values
from gradnap.engine.base import INPUT_LAYER, ForwardPass, Window
from gradnap.errors import GradnapError

__all__ = ["ReferenceEngine"]


@dataclass
class _ReferenceState:
    #: Differentiated quantity ``(K, T')`` with its graph.
    values: torch.Tensor
    #: Layer tensors in the graph, in ``layers`` order.
    inputs: list[torch.Tensor]


class ReferenceEngine(HookedEngine):
    """Per-frame autograd: one backward over the whole utterance per target frame.

    Same arguments and results as :class:`~gradnap.engine._autograd.AutogradEngine`.
    """

    def forward(self, x: torch.Tensor) -> ForwardPass:
        """``x``: input spectrogram ``(F, T)``. Keeps the autograd graph for the backward passes."""
        if x.dim() != 2:
            raise GradnapError(f"input: expected a (features, frames) tensor, got {tuple(x.shape)}")
        x = x.to(self._device, self._dtype).detach().requires_grad_(True)
        with torch.enable_grad(), capture(self.model, self.layers, self.time_major) as captured:
            y = self.model(x[None])[0]  # (K, T')
            values = target_values(y, self.output, self.target)
        # (F, T) for the input, (1, C_l, T_l) for layers (differentiate the graph's tensors)
        inputs = [x if n == INPUT_LAYER else captured[n] for n in self.layers]
        with torch.no_grad():
            probs = target_values(y, self.output, "prob").detach()
        acts = {
            n: t.detach().reshape(t.shape[-2:]) for n, t in zip(self.layers, inputs, strict=True)
        }
        return ForwardPass(acts, probs, _ReferenceState(values, inputs))

    def sensitivities(
        self, fwd: ForwardPass, frames: torch.Tensor, classes: torch.Tensor
    ) -> dict[str, Window]:
        """Whole-layer windows ``(n, C_l, T_l)`` (start 0): one backward pass per frame."""
        state = fwd.state
        if not isinstance(state, _ReferenceState):
            raise GradnapError("sensitivities: the forward pass was not made by this engine")
        frame_list = torch.as_tensor(frames, dtype=torch.int64).flatten().tolist()
        class_list = torch.as_tensor(classes, dtype=torch.int64).flatten().tolist()
        rows: list[list[torch.Tensor]] = [[] for _ in self.layers]
        for t, k in zip(frame_list, class_list, strict=True):
            grads = torch.autograd.grad(
                state.values[k, t], state.inputs, retain_graph=True, allow_unused=True
            )
            for r, g, inp in zip(rows, grads, state.inputs, strict=True):
                r.append((torch.zeros_like(inp) if g is None else g).reshape(inp.shape[-2:]))
        out = {}
        for name, r, inp in zip(self.layers, rows, state.inputs, strict=True):
            g = torch.stack(r) if r else inp.new_zeros(0, *inp.shape[-2:]).detach()
            out[name] = Window(g, torch.zeros(g.shape[0], dtype=torch.int64))
        return out
