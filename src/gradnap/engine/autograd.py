"""The generic autograd engine: per-frame sensitivities of any ``nn.Module``, batched.

Layers are captured with forward hooks by ``named_modules()`` name. For a batch of ``m``
target frames the input is repeated ``m`` times along the batch dimension, the model runs
once with gradients, and one backward pass of ``sum_i target_i`` (row ``i`` seeded at its
own frame's output column with ``d target / d output``) gives every row's sensitivities
at once, as large batched GEMMs. The model must treat batch rows independently, which
eval mode ensures for the usual layers. (Measured on a Wav2Letter: this is 2-5x faster
than ``torch.autograd.grad(..., is_grads_batched=True)``, i.e. ``vmap`` over the
backward pass of one forward.)

The engine knows no geometry: windows cover whole layers (``W = T_l``, ``start = 0``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..defaults import METHOD
from ..errors import GradnapError
from .base import INPUT_LAYER, ForwardPass, Window
from .layers import capture, check_layers, check_target, output_kind, target_values

__all__ = ["AutogradEngine", "output_seeds"]

log = logging.getLogger(__name__)

#: Bytes one batch may hold, counting three copies of every captured layer per frame
#: (activations kept for the backward pass and gradients); bounds the frames per batch.
MAX_BATCH_BYTES = 2**30


def output_seeds(
    y: torch.Tensor, kind: str, target: str, frames: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """``d target[k_i, tau_i] / d y[:, tau_i]`` for a model output ``y`` ``(K, T')``: ``(n, K)``.

    ``kind``: the output kind of ``y``; ``target``: ``prob``, ``logprob`` or ``logit``.
    """
    n = frames.shape[0]
    rows = torch.arange(n, device=y.device)
    cols = y[:, frames].T  # (n, K)
    g = torch.zeros_like(cols)
    if target == "logit" or (kind == "log_probs" and target == "logprob"):
        g[rows, classes] = 1.0
    elif kind == "probs":
        # prob: e_k; logprob: e_k / p_k
        g[rows, classes] = 1.0 if target == "prob" else 1.0 / cols[rows, classes]
    elif kind == "log_probs":  # prob = exp(y_k)
        g[rows, classes] = cols[rows, classes].exp()
    else:  # logits
        p = torch.softmax(cols, dim=1)
        g -= p
        g[rows, classes] += 1.0
        if target == "prob":
            g *= p[rows, classes][:, None]
    return g


@dataclass
class _AutogradState:
    x: torch.Tensor  # (F, T)
    y: torch.Tensor  # (K, T') model output (no graph)


class AutogradEngine:
    """Per-frame sensitivities of any model by batched autograd (whole-layer windows).

    ``model``: input ``(B, F, T)`` -> output ``(B, K, T')`` (put in eval mode).
    ``layers``: ``"input"`` and ``named_modules()`` names. ``target``: ``prob``,
    ``logprob`` or ``logit``. ``output``: the model's output kind (default
    ``model.output_kind``, else logits). ``batch_frames``: frames per batched backward
    (default: as many as fit in :data:`MAX_BATCH_BYTES`, at most ``METHOD.chunk_frames``).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        target: str = METHOD.target,
        output: str | None = None,
        batch_frames: int | None = None,
    ) -> None:
        model.eval()
        self.model = model
        self.layers = check_layers(model, layers)
        self.output = output_kind(model, output)
        check_target(target, self.output)
        self.target = target
        if batch_frames is not None and batch_frames < 1:
            raise GradnapError(f"batch_frames: must be at least 1, got {batch_frames}")
        self.batch_frames = batch_frames
        p = next(model.parameters(), None)
        self._device = p.device if p is not None else torch.device("cpu")
        self._dtype = p.dtype if p is not None else torch.float32

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Model output ``(B, K, T')`` and captured layers ``(B, C_l, T_l)`` for ``x`` ``(B, F, T)``."""
        with capture(self.model, self.layers) as captured:
            y = self.model(x)
        if not isinstance(y, torch.Tensor) or y.dim() != 3:
            raise GradnapError(
                f"model output must be a (batch, classes, frames) tensor, got "
                f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}"
            )
        missing = [n for n in self.layers if n != INPUT_LAYER and n not in captured]
        if missing:
            raise GradnapError(f"layers {missing} did not run in the model's forward pass")
        acts = {name: (x if name == INPUT_LAYER else captured[name]) for name in self.layers}
        return y, acts

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> ForwardPass:
        """``x``: input spectrogram ``(F, T)``. One forward pass without gradients."""
        if x.dim() != 2:
            raise GradnapError(f"input: expected a (features, frames) tensor, got {tuple(x.shape)}")
        x = x.to(self._device, self._dtype)
        y, acts = self._run(x[None])
        probs = target_values(y[0], self.output, "prob")
        activations = {name: a[0] for name, a in acts.items()}
        return ForwardPass(activations, probs, _AutogradState(x, y[0]))

    def sensitivities(
        self, fwd: ForwardPass, frames: torch.Tensor, classes: torch.Tensor
    ) -> dict[str, Window]:
        """Whole-layer windows ``(n, C_l, T_l)`` (start 0) for frames ``(n,)`` and classes ``(n,)``."""
        state = fwd.state
        if not isinstance(state, _AutogradState):
            raise GradnapError("sensitivities: the forward pass was not made by this engine")
        frames = torch.as_tensor(frames, dtype=torch.int64, device=self._device).flatten()
        classes = torch.as_tensor(classes, dtype=torch.int64, device=self._device).flatten()
        if frames.shape != classes.shape:
            raise GradnapError("sensitivities: frames and classes differ in length")
        n_cls, t_out = state.y.shape
        if frames.numel() and (frames.min() < 0 or frames.max() >= t_out):
            raise GradnapError(f"sensitivities: frames must lie in 0..{t_out - 1}")
        if classes.numel() and (classes.min() < 0 or classes.max() >= n_cls):
            raise GradnapError(f"sensitivities: classes must lie in 0..{n_cls - 1}")
        per_frame = 3 * sum(a.numel() for a in fwd.activations.values()) * state.x.element_size()
        batch = self.batch_frames or max(1, min(METHOD.chunk_frames, MAX_BATCH_BYTES // per_frame))
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}
        for a in range(0, frames.shape[0], batch):
            fr, cl = frames[a : a + batch], classes[a : a + batch]
            grads = self._batch(state, fr, cl)
            for name in self.layers:
                parts[name].append(grads[name])
        out = {}
        for name in self.layers:
            c, t = fwd.activations[name].shape
            g = torch.cat(parts[name]) if parts[name] else state.x.new_zeros(0, c, t)
            out[name] = Window(g, torch.zeros(g.shape[0], dtype=torch.int64, device=g.device))
        return out

    def _batch(
        self, state: _AutogradState, frames: torch.Tensor, classes: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Gradients ``(m, C_l, T_l)`` for ``m`` frames in one batched backward."""
        seeds = output_seeds(state.y, self.output, self.target, frames, classes)  # (m, K)
        m = frames.shape[0]
        x = state.x[None].expand(m, *state.x.shape).clone()
        with torch.enable_grad():
            # the input needs a gradient only when asked for, or to build a graph at all
            frozen = not any(p.requires_grad for p in self.model.parameters())
            x.requires_grad_(INPUT_LAYER in self.layers or frozen)
            y, acts = self._run(x)  # y (m, K, T')
            gy = torch.zeros_like(y)
            gy[torch.arange(m), :, frames] = seeds
            grads = torch.autograd.grad(y, [acts[n] for n in self.layers], gy, allow_unused=True)
        return {
            name: (g if g is not None else torch.zeros_like(acts[name])).detach()
            for name, g in zip(self.layers, grads, strict=True)
        }
