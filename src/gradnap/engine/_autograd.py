"""The generic autograd engine: per-frame sensitivities of any ``nn.Module``.

Layers are captured with forward hooks by ``named_modules()`` name (tuple outputs by
their first tensor, time-major ``(B, T, C)`` outputs as ``(C, T)``, see
:func:`gradnap.engine._layers.capture`). Three exact strategies:

- ``"per_frame"``: the utterance's forward pass is run once, with a graph, in
  :meth:`AutogradEngine.forward`; then one backward pass per frame over that graph
  (``retain_graph=True``). The frames of a call are split between single-threaded worker
  threads that run their backward passes at the same time over the shared graph (each
  frame on one thread, so the result does not depend on the number of workers). The graph
  starts at the first requested layer: what runs before it (for a wav2vec 2.0 model, the
  conv front end when only later layers are requested) runs without one.
- ``"vjp"``: the same backward passes over the same graph, batched: one
  ``torch.autograd.grad(..., is_grads_batched=True)`` (``vmap`` over the backward pass)
  per batch of frames, the batches split between the workers.
- ``"batch"``: for a batch of ``m`` target frames the input is repeated ``m`` times along
  the batch dimension, the model runs once with gradients, and one backward pass of
  ``sum_i target_i`` (row ``i`` seeded at its own frame's output column with
  ``d target / d output``) gives every row's sensitivities at once, as large batched
  GEMMs. The model must treat batch rows independently, which eval mode ensures for the
  usual layers. Costs one forward and one backward per frame; no graph is kept between
  calls (measured on a Wav2Letter: 2-5x faster than ``"vjp"``).

Batching wins on short utterances and small convolutional models (batch-1 GEMMs are
small), the per-frame backward on long utterances of big models and on attention models,
whose forward pass (a wav2vec 2.0's conv front end above all) costs many backward passes.
``"auto"`` (default) times the strategies on the first frames of the first utterance of
each length class (input frames rounded to a power of two) and then picks, per
utterance, the cheaper one from that calibration; ``"batch"`` is tried only when the
utterance's forward pass costs less than :data:`BATCH_FORWARD_LIMIT` per-frame backward
passes. It also times the per-frame backward pass with oneDNN (``torch.backends.mkldnn``)
switched off, and keeps it off for the backward passes over the graph when that is
faster (measured on a wav2vec 2.0 model: its grouped positional convolution's backward
pass took 13 ms instead of 43 ms without oneDNN, and the whole per-frame backward pass
10-30% less CPU time). The switch is process-wide while the backward passes run.

**Reproducibility.** The forward pass runs on one thread and the per-frame and vjp
backward passes on single-threaded workers, each frame alone (per-frame) or in batches
fixed by ``batch_frames`` (vjp), so a fixed ``"per_frame"`` or ``"vjp"`` strategy gives
bit for bit the same sensitivities for any thread and worker count, in any process (and
so shards and resumed runs equal a whole run, docs/method.md §5). ``"auto"`` chooses by
timing, and the strategies (and oneDNN on or off) round differently, by about 1e-7 of a
layer's largest value: two processes that time differently may differ by that much.
``"batch"`` runs on torch's intra-op threads, whose GEMMs may add in a thread-dependent
order.

**Position-wise heads.** A model may declare ``pointwise_after`` (see
:mod:`gradnap.engine._hooked`): modules (for a transformer CTC model, the last encoder
layer's input and its attention output) whose outputs carry all of the output's
dependence on the layers below, each at the output frame's position, everything after
them acting on each position alone. The sensitivity of frame ``tau`` with respect to
them, and to every module that finishes after the last of them (the last encoder layer,
the output layer), is then non-zero at position ``tau`` alone: one backward pass through
the head, seeded at every frame's column at once, gives all of them (a frame seen twice
in one call goes into a second pass; the modules after the first are cut from the graph
for it), and their windows are one position wide (``W = 1``, ``start = tau``). The
per-frame backward passes start below the head, seeded with the frame's column of each
of its inputs.

Other windows cover whole layers (``W = T_l``, ``start = 0``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from gradnap.defaults import AUTOGRAD_STRATEGIES, METHOD
from gradnap.engine._chain import Chain
from gradnap.engine._hooked import HookedEngine
from gradnap.engine._layers import capture, target_values
from gradnap.engine.base import INPUT_LAYER, ForwardPass, Window
from gradnap.errors import GradnapError
from gradnap.threads import WorkerPool, one_thread

__all__ = ["AutogradEngine", "output_seeds"]

log = logging.getLogger(__name__)

#: Bytes one batch may hold, counting three copies of every captured layer per frame
#: (activations kept for the backward pass and gradients); bounds the frames per batch.
MAX_BATCH_BYTES = 2**30

#: The ``"batch"`` strategy is calibrated only when one forward pass with a graph costs
#: less than this many per-frame backward passes (it runs a forward per frame).
BATCH_FORWARD_LIMIT = 8.0


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


STRATEGIES = AUTOGRAD_STRATEGIES

#: Frames a call must have for the "auto" strategy to calibrate on it.
CALIBRATION_FRAMES = 8
#: At most this many frames per worker in the timed "vjp" batch of a calibration (the
#: wav2vec 2.0 benchmark model ran it 3x slower than the per-frame backward).
CALIBRATION_BATCH = 16


@dataclass
class _Graph:
    """One utterance's forward pass with its autograd graph."""

    #: Model output ``(1, K, T')``.
    out: torch.Tensor
    #: Requested layers above the position-wise boundary, and their tensors ``(1, C, T)``.
    top: list[str]
    top_tensors: list[torch.Tensor]
    #: Where the per-frame backward passes start: the boundary tensors ``(1, C, T)`` in
    #: the graph below (when the model has a position-wise head), else the output.
    sources: list[torch.Tensor]
    #: The boundary tensors as the head sees them (cut ones: their leaves).
    heads: list[torch.Tensor]
    #: The other requested layers, and their tensors (``(F, T)`` for the input,
    #: ``(1, C, T)`` for layers).
    lower: list[str]
    lower_tensors: list[torch.Tensor]

    @property
    def split(self) -> bool:
        """The model has a position-wise head (the backward passes start below it)."""
        return self.sources[0] is not self.out


@dataclass
class _AutogradState:
    x: torch.Tensor  # (F, T)
    y: torch.Tensor  # (K, T') model output (no graph)
    #: The graph for the per-frame and vjp strategies (``None`` for "batch").
    graph: _Graph | None = None


@dataclass
class _Calibration:
    """Seconds per frame of each strategy, measured on the first utterance (of
    ``frames`` output frames); ``None``: not a candidate."""

    graph_forward: float  # one forward with a graph
    per_frame: float  # one per-frame backward
    batch: float | None  # one frame of the batch strategy
    frames: int
    vjp: float | None = None  # one frame of a batched vjp
    #: oneDNN stays on for the backward passes over the graph.
    onednn: bool = True
    costs: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.costs = {"per_frame": self.per_frame}
        if self.vjp is not None:
            self.costs["vjp"] = self.vjp
        if self.batch is not None:
            self.costs["batch"] = self.batch

    def choose(self, frames: int) -> str:
        """The cheapest strategy for an utterance of ``frames`` output frames (all costs
        scale with its length; the graph's forward pass is shared by its frames and is
        not needed by "batch")."""
        shared = self.graph_forward / max(frames, 1)
        return min(self.costs, key=lambda s: self.costs[s] + (0.0 if s == "batch" else shared))


class AutogradEngine(HookedEngine):
    """Per-frame sensitivities of any model by autograd (whole-layer windows).

    ``model``: input ``(B, F, T)`` -> output ``(B, K, T')`` (put in eval mode).
    ``layers``: ``"input"`` and ``named_modules()`` names. ``target``: ``prob``,
    ``logprob`` or ``logit``. ``output``: the model's output kind (default
    ``model.output_kind``, else logits). ``batch_frames``: frames per batch of the
    "batch" and "vjp" strategies (default: as many as fit in :data:`MAX_BATCH_BYTES`, at
    most ``METHOD.chunk_frames``). ``strategy``: ``"auto"``, ``"batch"``, ``"per_frame"``
    or ``"vjp"`` (module docstring). ``workers``: threads for the per-frame and vjp
    strategies, each with one intra-op thread (default: torch's intra-op thread count on
    CPU; ``0``: the calling thread with torch's own threads). ``chain``: the model's
    Conv1d chain when it is one (geometry only).
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
        workers: int | None = None,
    ) -> None:
        super().__init__(model, layers, target, output, chain)
        if batch_frames is not None and batch_frames < 1:
            raise GradnapError(f"batch_frames: must be at least 1, got {batch_frames}")
        self.batch_frames = batch_frames
        if strategy not in STRATEGIES:
            raise GradnapError(f"strategy: {strategy!r}; choose from {', '.join(STRATEGIES)}")
        self.strategy = strategy
        if workers is not None and workers < 0:
            raise GradnapError(f"workers: must be 0 or more, got {workers}")
        self.workers = workers
        self._workers = WorkerPool("gradnap-autograd")
        #: Length class (log2 of input frames, rounded) -> calibration.
        self.calibrations: dict[int, _Calibration] = {}
        self.calibration: _Calibration | None = None
        self._forward_seconds = 0.0

    def resolved_workers(self) -> int:
        """Worker threads of the per-frame and vjp strategies (0: the calling thread)."""
        if self.workers is not None:
            return self.workers
        return torch.get_num_threads() if self._device.type == "cpu" else 0

    def close(self) -> None:
        """Stop the worker threads (they restart when needed)."""
        self._workers.close()

    @staticmethod
    def _length_class(t_in: int) -> int:
        return round(math.log2(max(t_in, 1)))

    def _planned(self, t_in: int) -> str | None:
        """The strategy for an input of ``t_in`` frames, when known before its forward."""
        if self.strategy != "auto":
            return self.strategy
        cal = self.calibrations.get(self._length_class(t_in))
        return None if cal is None else cal.choose(cal.frames)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Model output ``(B, K, T')`` and captured layers ``(B, C_l, T_l)`` for ``x`` ``(B, F, T)``."""
        with capture(self.model, self.layers, self.time_major) as captured:
            y = self.model(x)
        self._check_output(y)
        self._check_ran(captured)
        acts = {name: (x if name == INPUT_LAYER else captured[name]) for name in self.layers}
        return y, acts

    @staticmethod
    def _check_output(y: object) -> None:
        if not isinstance(y, torch.Tensor) or y.dim() != 3:
            raise GradnapError(
                f"model output must be a (batch, classes, frames) tensor, got "
                f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}"
            )

    def _check_ran(self, captured: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.layers if n != INPUT_LAYER and n not in captured]
        if missing:
            raise GradnapError(f"layers {missing} did not run in the model's forward pass")

    def forward(self, x: torch.Tensor) -> ForwardPass:
        """``x``: input ``(F, T)``. One forward pass: with a graph from the first
        requested layer on for the per-frame and vjp strategies, without for "batch"."""
        if x.dim() != 2:
            raise GradnapError(f"input: expected a (features, frames) tensor, got {tuple(x.shape)}")
        x = x.to(self._device, self._dtype)
        t0 = time.perf_counter()
        # on one thread: a parallel GEMM may add in an order that depends on the thread
        # count, and the activations (and every sensitivity below them) would follow it
        with one_thread():
            if self._planned(x.shape[1]) == "batch":
                with torch.no_grad():
                    y, acts = self._run(x[None])
                state = _AutogradState(x, y[0])
                activations = {name: a[0] for name, a in acts.items()}
            else:
                state, activations = self._graph_forward(x)
        self._forward_seconds = time.perf_counter() - t0
        probs = target_values(state.y, self.output, "prob")
        return ForwardPass(activations, probs, state)

    def _graph_forward(self, x: torch.Tensor) -> tuple[_AutogradState, dict[str, torch.Tensor]]:
        """The forward pass with its graph (see the module doc)."""
        boundary = self.pointwise_after
        hooked = list(self.layers) + [b for b in boundary if b not in self.layers]
        with_input = INPUT_LAYER in self.layers
        xg = x.detach().clone().requires_grad_(with_input)
        grad_mode = torch.enable_grad() if with_input else torch.no_grad()
        attached: dict[str, torch.Tensor] = {}
        with (
            grad_mode,
            capture(self.model, hooked, self.time_major, True, boundary[1:], attached) as captured,
        ):
            out = self.model(xg[None])
        self._check_output(out)
        self._check_ran(captured)
        if not out.requires_grad:
            raise GradnapError("the model output does not depend on the requested layers")
        tensors = {name: (xg if name == INPUT_LAYER else captured[name]) for name in self.layers}
        order = list(captured)  # the order in which the modules finished
        top: list[str] = []
        sources, heads = [out], [out]
        if boundary and all(b in captured for b in boundary):
            first = max(order.index(b) for b in boundary)
            top = [n for n in self.layers if n != INPUT_LAYER and order.index(n) >= first]
            sources = [attached.get(b, captured[b]) for b in boundary]
            heads = [captured[b] for b in boundary]
        lower = [n for n in self.layers if n not in top]
        graph = _Graph(
            out,
            top,
            [tensors[n] for n in top],
            sources,
            heads,
            lower,
            [tensors[n] for n in lower],
        )
        activations = {
            n: t.detach().reshape(t.shape[-2:]) for n, t in tensors.items()
        }  # (C_l, T_l); the input (F, T)
        return _AutogradState(x, out.detach()[0], graph), activations

    def sensitivities(
        self, fwd: ForwardPass, frames: torch.Tensor, classes: torch.Tensor
    ) -> dict[str, Window]:
        """Windows ``(n, C_l, W)`` for frames ``(n,)`` and classes ``(n,)``: whole layers
        (start 0), one position (start ``tau``) above a position-wise boundary."""
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
        n = int(frames.shape[0])
        # seeds (n, C) per source of the backward passes: the output's, or the boundary's
        seeds = [output_seeds(state.y, self.output, self.target, frames, classes)]
        out: dict[str, Window] = {}
        graph = state.graph
        lower = list(self.layers) if graph is None else graph.lower
        if graph is not None and graph.split:
            seeds = self._top(graph, frames, seeds[0], out)
        if not lower:
            return out
        grads = {
            name: state.x.new_empty(n, *fwd.activations[name].shape) for name in lower
        }  # (n, C_l, T_l), filled row by row
        per = 3 * sum(a.numel() for a in fwd.activations.values()) * state.x.element_size()
        batch = self.batch_frames or max(1, min(METHOD.chunk_frames, MAX_BATCH_BYTES // per))
        done = 0
        length_class = self._length_class(state.x.shape[1])
        strategy, onednn = self.strategy, True
        if strategy == "auto":
            if length_class not in self.calibrations and n >= CALIBRATION_FRAMES:
                done = self._calibrate(state, frames, classes, seeds, batch, grads)
                assert self.calibration is not None
                self.calibrations[length_class] = self.calibration
            cal = self.calibrations.get(length_class)
            strategy = cal.choose(t_out) if cal is not None else "per_frame"
            onednn = cal.onednn if cal is not None else True
        rows = torch.arange(done, n)
        if rows.numel():
            self._apply(strategy, state, frames, classes, seeds, rows, batch, grads, onednn)
        for name in lower:
            g = grads[name]
            out[name] = Window(g, torch.zeros(n, dtype=torch.int64, device=g.device))
        return {name: out[name] for name in self.layers}

    # --- the head above a position-wise boundary ------------------------------------------

    def _top(
        self, graph: _Graph, frames: torch.Tensor, seeds: torch.Tensor, out: dict[str, Window]
    ) -> list[torch.Tensor]:
        """One-position windows of the layers above the boundary into ``out``; returns the
        seeds ``(n, C)`` at each boundary tensor for the backward passes below it."""
        n = frames.shape[0]
        targets = list(graph.top_tensors)
        where = []  # the position of each boundary tensor among the targets
        for h in graph.heads:
            same = [i for i, t in enumerate(targets) if t is h]
            if not same:
                targets.append(h)
            where.append(same[0] if same else len(targets) - 1)
        wins = [t.new_zeros(n, t.shape[1], 1) for t in graph.top_tensors]
        src_seeds = [h.new_zeros(n, h.shape[1]) for h in graph.heads]
        for rows in _distinct_rounds(frames):
            g_out = torch.zeros_like(graph.out)
            cols = frames[rows]
            g_out[0, :, cols] = seeds[rows].T
            grads = torch.autograd.grad(
                graph.out, targets, g_out, retain_graph=True, allow_unused=True
            )
            for w, g in zip(wins, grads, strict=False):
                if g is not None:
                    w[rows, :, 0] = g[0][:, cols].T
            for s, i in zip(src_seeds, where, strict=True):
                if grads[i] is not None:
                    s[rows] = grads[i][0][:, cols].T
        for name, w in zip(graph.top, wins, strict=True):
            out[name] = Window(w, frames.clone())
        return src_seeds

    # --- strategies ----------------------------------------------------------------------

    def _apply(
        self,
        strategy: str,
        state: _AutogradState,
        frames: torch.Tensor,
        classes: torch.Tensor,
        seeds: list[torch.Tensor],
        rows: torch.Tensor,
        batch: int,
        grads: dict[str, torch.Tensor],
        onednn: bool = True,
    ) -> None:
        """Rows ``rows`` of ``grads`` by ``strategy`` (``onednn``: for the backward
        passes over the graph)."""
        with _onednn(onednn or strategy == "batch"):
            if strategy == "batch":
                for a in range(0, rows.numel(), batch):
                    r = rows[a : a + batch]
                    part = self._batch(state, frames[r], classes[r])
                    for name, g in grads.items():
                        g[r] = part[name]
                return
            graph = self._graph(state)
            if strategy == "vjp":
                pieces = [rows[a : a + batch] for a in range(0, rows.numel(), batch)]
                step = lambda r: self._vjp(graph, frames, seeds, r, grads)  # noqa: E731
            else:
                workers = max(1, self.resolved_workers())
                size = max(1, math.ceil(rows.numel() / (2 * workers)))
                pieces = [rows[a : a + size] for a in range(0, rows.numel(), size)]
                step = lambda r: self._per_frame(graph, frames, seeds, r, grads)  # noqa: E731
            self._workers.map(step, pieces, self.resolved_workers())

    def _graph(self, state: _AutogradState) -> _Graph:
        """The utterance's graph (made now when its forward pass had none)."""
        if state.graph is None:
            with one_thread():
                state.graph = self._graph_forward(state.x)[0].graph
        assert state.graph is not None
        return state.graph

    @staticmethod
    def _per_frame(
        graph: _Graph,
        frames: torch.Tensor,
        seeds: list[torch.Tensor],
        rows: torch.Tensor,
        grads: dict[str, torch.Tensor],
    ) -> None:
        """Rows ``rows`` of ``grads``: one backward pass per frame over the graph, seeded
        at the frame's column of every source."""
        for i in rows.tolist():
            t = int(frames[i])
            g_src = []
            for src, seed in zip(graph.sources, seeds, strict=True):
                g = torch.zeros_like(src)
                g[0, :, t] = seed[i]
                g_src.append(g)
            got = torch.autograd.grad(
                graph.sources, graph.lower_tensors, g_src, retain_graph=True, allow_unused=True
            )
            for name, g in zip(graph.lower, got, strict=True):
                if g is None:
                    grads[name][i] = 0.0
                else:
                    grads[name][i] = g.reshape(grads[name].shape[1:])

    @staticmethod
    def _vjp(
        graph: _Graph,
        frames: torch.Tensor,
        seeds: list[torch.Tensor],
        rows: torch.Tensor,
        grads: dict[str, torch.Tensor],
    ) -> None:
        """Rows ``rows`` of ``grads``: one batched backward pass (``is_grads_batched``)."""
        m = rows.numel()
        g_src = []
        for src, seed in zip(graph.sources, seeds, strict=True):
            g = src.new_zeros(m, *src.shape)
            g[torch.arange(m), 0, :, frames[rows]] = seed[rows]
            g_src.append(g)
        got = torch.autograd.grad(
            graph.sources,
            graph.lower_tensors,
            g_src,
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=True,
        )
        for name, g in zip(graph.lower, got, strict=True):
            if g is None:
                grads[name][rows] = 0.0
            else:
                grads[name][rows] = g.reshape(m, *grads[name].shape[1:])

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

    # --- calibration ----------------------------------------------------------------------

    def _calibrate(
        self,
        state: _AutogradState,
        frames: torch.Tensor,
        classes: torch.Tensor,
        seeds: list[torch.Tensor],
        batch: int,
        grads: dict[str, torch.Tensor],
    ) -> int:
        """Time the strategies on the first frames (their results kept in ``grads``);
        returns the number of frames done. Each strategy first runs once untimed (one-time
        costs of new shapes), then is timed on as many frames as the workers take at once
        (per-frame), or one batch per worker (vjp, batch)."""
        clock = time.perf_counter
        n = frames.shape[0]
        workers = max(1, self.resolved_workers())
        done = 0

        def run(strategy: str, count: int, onednn: bool = True) -> float:
            nonlocal done
            count = min(count, n - done)
            if count <= 0:
                return math.inf
            rows = torch.arange(done, done + count)
            c0 = clock()
            self._apply(strategy, state, frames, classes, seeds, rows, max(1, batch), grads, onednn)
            done += count
            return (clock() - c0) / count

        had_graph = state.graph is not None
        t0 = clock()
        self._graph(state)
        graph_forward = self._forward_seconds if had_graph else clock() - t0
        run("per_frame", 1)
        per_frame = run("per_frame", 2 * workers)
        run("per_frame", 1, onednn=False)
        without = run("per_frame", 2 * workers, onednn=False)
        onednn = per_frame <= without
        per_frame = min(per_frame, without)
        share = max(2, min(batch, CALIBRATION_BATCH, (n - done - 2) // (2 * workers)))
        run("vjp", 2, onednn)
        vjp = run("vjp", share * workers, onednn) if done < n else None
        batch_cost = None
        if graph_forward < BATCH_FORWARD_LIMIT * per_frame:
            run("batch", 2)
            if done < n:
                batch_cost = run("batch", min(batch, n - done))
        t_out = state.y.shape[1]
        #: The latest calibration.
        self.calibration = _Calibration(graph_forward, per_frame, batch_cost, t_out, vjp, onednn)
        log.info(
            "autograd engine on %d output frames: %.4f s per frame per-frame (%d workers, "
            "oneDNN %s), %s s batched vjp, %s s batch strategy, %.3f s forward: %s",
            t_out,
            per_frame,
            workers,
            "on" if onednn else "off",
            "-" if vjp is None else f"{vjp:.4f}",
            "-" if batch_cost is None else f"{batch_cost:.4f}",
            graph_forward,
            self.calibration.choose(t_out),
        )
        return done


@contextmanager
def _onednn(enabled: bool) -> Iterator[None]:
    """oneDNN (``torch.backends.mkldnn``) on or off for the duration (process-wide)."""
    before = torch.backends.mkldnn.enabled
    setattr(torch.backends.mkldnn, "enabled", enabled)  # noqa: B010 (a module property)
    try:
        yield
    finally:
        setattr(torch.backends.mkldnn, "enabled", before)  # noqa: B010


def _distinct_rounds(frames: torch.Tensor) -> list[torch.Tensor]:
    """Row indices of ``frames`` in rounds within which no frame repeats."""
    rounds: list[list[int]] = []
    seen: list[set[int]] = []
    for i, f in enumerate(frames.tolist()):
        for r, s in zip(rounds, seen, strict=True):
            if f not in s:
                r.append(i)
                s.add(f)
                break
        else:
            rounds.append([i])
            seen.append({f})
    return [torch.tensor(r, dtype=torch.int64) for r in rounds]
