"""The generic autograd engine: per-frame sensitivities of any ``nn.Module``, batched.

Layers are captured with forward hooks by ``named_modules()`` name. Two exact strategies:

- ``"batch"``: for a batch of ``m`` target frames the input is repeated ``m`` times along
  the batch dimension, the model runs once with gradients, and one backward pass of
  ``sum_i target_i`` (row ``i`` seeded at its own frame's output column with
  ``d target / d output``) gives every row's sensitivities at once, as large batched
  GEMMs. The model must treat batch rows independently, which eval mode ensures for the
  usual layers. (Measured on a Wav2Letter: 2-5x faster than
  ``torch.autograd.grad(..., is_grads_batched=True)``, i.e. ``vmap`` over the backward
  pass of one forward.) Costs one forward and one backward per frame.
- ``"per_frame"``: one forward with a graph per utterance, then one backward per frame
  (``retain_graph=True``). Costs one backward per frame, unbatched.

Batching wins on short utterances and small models (batch-1 GEMMs are small), the
per-frame backward on long utterances of big models (it saves the repeated forward).
``"auto"`` (default) times both on the first frames of the first utterance of each length
class (output frames rounded to a power of two) and then picks, per utterance, the
cheaper one from that calibration (the forward being shared by the utterance's frames);
the choice changes speed, never results.

The engine knows no geometry: windows cover whole layers (``W = T_l``, ``start = 0``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from gradnap.defaults import METHOD
from gradnap.engine._chain import Chain
from gradnap.engine._hooked import HookedEngine
from gradnap.engine._layers import capture, target_values
from gradnap.engine.base import INPUT_LAYER, ForwardPass, Window
from gradnap.errors import GradnapError

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


STRATEGIES = ("auto", "batch", "per_frame")

#: Frames a call must have for the "auto" strategy to calibrate on it.
CALIBRATION_FRAMES = 8


@dataclass
class _AutogradState:
    x: torch.Tensor  # (F, T)
    y: torch.Tensor  # (K, T') model output (no graph)
    #: For the per-frame strategy: target values (K, T') with their graph, and the layer
    #: tensors in that graph (built on first use).
    graph: tuple[torch.Tensor, list[torch.Tensor]] | None = None


@dataclass
class _Calibration:
    """Seconds measured on the first utterance (of ``frames`` output frames)."""

    graph_forward: float  # one forward with a graph
    per_frame: float  # one per-frame backward
    batch: float  # one frame of the batch strategy
    frames: int

    def choose(self, frames: int) -> str:
        """The cheaper strategy for an utterance of ``frames`` output frames (all costs
        scale with its length; the graph forward is shared by its frames)."""
        scale = frames / self.frames
        per_frame = scale * (self.per_frame + self.graph_forward / max(frames, 1))
        return "per_frame" if per_frame < scale * self.batch else "batch"


class AutogradEngine(HookedEngine):
    """Per-frame sensitivities of any model by batched autograd (whole-layer windows).

    ``model``: input ``(B, F, T)`` -> output ``(B, K, T')`` (put in eval mode).
    ``layers``: ``"input"`` and ``named_modules()`` names. ``target``: ``prob``,
    ``logprob`` or ``logit``. ``output``: the model's output kind (default
    ``model.output_kind``, else logits). ``batch_frames``: frames per batched backward
    (default: as many as fit in :data:`MAX_BATCH_BYTES`, at most ``METHOD.chunk_frames``).
    ``strategy``: ``"auto"``, ``"batch"`` or ``"per_frame"`` (module docstring).
    ``chain``: the model's Conv1d chain when it is one (geometry only).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        target: str = METHOD.target,
        output: str | None = None,
        batch_frames: int | None = None,
        strategy: str = "auto",
        chain: Chain | None = None,
    ) -> None:
        super().__init__(model, layers, target, output, chain)
        if batch_frames is not None and batch_frames < 1:
            raise GradnapError(f"batch_frames: must be at least 1, got {batch_frames}")
        self.batch_frames = batch_frames
        if strategy not in STRATEGIES:
            raise GradnapError(f"strategy: {strategy!r}; choose from {', '.join(STRATEGIES)}")
        self.strategy = strategy
        #: Length class (log2 of output frames, rounded) -> calibration.
        self.calibrations: dict[int, _Calibration] = {}
        self.calibration: _Calibration | None = None

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
        parts: list[dict[str, torch.Tensor]] = []
        n = frames.shape[0]
        done = 0
        length_class = round(math.log2(max(t_out, 1)))
        calibrate = length_class not in self.calibrations and n >= CALIBRATION_FRAMES
        if self.strategy == "auto" and calibrate:
            done = self._calibrate(state, frames, classes, batch, parts)
            self.calibrations[length_class] = self.calibration  # type: ignore[assignment]
        strategy = self.strategy
        if strategy == "auto":
            cal = self.calibrations.get(length_class)
            strategy = cal.choose(t_out) if cal is not None else "batch"
        if strategy == "per_frame":
            if done < n:
                parts.append(self._per_frame(state, frames[done:], classes[done:]))
        else:
            for a in range(done, n, batch):
                parts.append(self._batch(state, frames[a : a + batch], classes[a : a + batch]))
        out = {}
        for name in self.layers:
            c, t = fwd.activations[name].shape
            gs = [p[name] for p in parts]
            g = torch.cat(gs) if gs else state.x.new_zeros(0, c, t)
            out[name] = Window(g, torch.zeros(g.shape[0], dtype=torch.int64, device=g.device))
        return out

    def _calibrate(
        self,
        state: _AutogradState,
        frames: torch.Tensor,
        classes: torch.Tensor,
        batch: int,
        parts: list[dict[str, torch.Tensor]],
    ) -> int:
        """Time both strategies on the first frames (results kept in ``parts``); returns
        the number of frames done (at least :data:`CALIBRATION_FRAMES`). Each strategy
        first runs once untimed (one-time costs of new shapes); then two per-frame
        backward passes and one batch are timed."""
        clock = time.perf_counter
        t0 = clock()
        self._graph(state)
        graph_forward = clock() - t0
        parts.append(self._per_frame(state, frames[:1], classes[:1]))  # warm-up
        t0 = clock()
        parts.append(self._per_frame(state, frames[1:3], classes[1:3]))
        per_frame = (clock() - t0) / 2
        parts.append(self._batch(state, frames[3:5], classes[3:5]))  # warm-up
        kb = min(batch, frames.shape[0] - 5)
        t0 = clock()
        parts.append(self._batch(state, frames[5 : 5 + kb], classes[5 : 5 + kb]))
        per_batched = (clock() - t0) / kb
        t_out = state.y.shape[1]
        #: The latest calibration.
        self.calibration = _Calibration(graph_forward, per_frame, per_batched, t_out)
        log.info(
            "autograd engine: %.3f s per frame batched (%d frames), %.3f s per-frame backward "
            "+ %.3f s forward per utterance of %d frames: %s",
            per_batched,
            kb,
            per_frame,
            graph_forward,
            t_out,
            self.calibration.choose(t_out),
        )
        return 5 + kb

    def _graph(self, state: _AutogradState) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The utterance's forward graph for the per-frame strategy (built once)."""
        if state.graph is None:
            x = state.x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                y, acts = self._run(x[None])
                values = target_values(y[0], self.output, self.target)  # (K, T')
            # (F, T) for the input, (1, C_l, T_l) for layers: the tensors in the graph
            inputs = [x if n == INPUT_LAYER else acts[n] for n in self.layers]
            state.graph = (values, inputs)
        return state.graph

    def _per_frame(
        self, state: _AutogradState, frames: torch.Tensor, classes: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Gradients ``(m, C_l, T_l)``, one backward pass per frame over the shared graph."""
        values, inputs = self._graph(state)
        rows: list[list[torch.Tensor]] = [[] for _ in self.layers]
        for t, k in zip(frames.tolist(), classes.tolist(), strict=True):
            grads = torch.autograd.grad(values[k, t], inputs, retain_graph=True, allow_unused=True)
            for r, g, inp in zip(rows, grads, inputs, strict=True):
                r.append((torch.zeros_like(inp) if g is None else g).reshape(inp.shape[-2:]))
        return {name: torch.stack(r) for name, r in zip(self.layers, rows, strict=True)}

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
