"""The cone engine: exact per-frame sensitivities restricted to each frame's receptive field.

DESIGN §4. For a model that is a chain of Conv1d layers and elementwise operations
(:mod:`gradnap.engine.chain`):

1. :meth:`ConeEngine.forward` runs the chain once without gradients and keeps, per stage
   ``i``, the activation derivative ``D_i = dA_i/dZ_i`` (the ReLU mask; the product of the
   derivatives when a stage has several elementwise operations), zero-padded outside the
   utterance so that every frame's cone can be cut from it.
2. :meth:`ConeEngine.sensitivities` runs a hand-written backward for a chunk of ``n``
   target frames, each restricted to its cone: a seed at the output (``d target / d z``,
   e.g. ``p_k (e_k - p)`` for ``prob``), then per stage ``i = L..1``:
   ``gZ = gA * D_i[cone]`` and ``gA_{i-1} = conv_transpose(gZ, W_i)`` — a GEMM when the
   cone is one position wide or the kernel is 1, ``conv_transpose1d`` otherwise (stride and
   dilation included). The window of stage ``i`` for frame ``tau`` starts at
   ``Geometry.cone(tau, i)[0]`` and is ``Geometry.cone_width(i)`` wide.

Positions outside the utterance are zero in ``D`` and zeroed in returned windows, so the
result equals autograd on the whole utterance up to float rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..defaults import METHOD
from ..errors import GradnapError
from ..geometry import ConvSpec
from .base import INPUT_LAYER, ForwardPass, Window
from .chain import Affine, Chain, extract_chain
from .layers import check_layers, check_target

__all__ = ["ConeEngine", "cone_flops"]

log = logging.getLogger(__name__)


@dataclass
class _ConeState:
    #: Per stage ``i >= 1``: ``(C_i, P_i)`` activation derivative, zero-padded.
    deriv: list[torch.Tensor | None]
    #: ``(stage, j)`` -> ``(C_i, P_i)`` derivative of the ops after position j (requested
    #: pre-/mid-activation positions only), zero-padded like ``deriv``.
    suffix: dict[tuple[int, int], torch.Tensor]
    #: Per stage: index in the padded tensors of position 0.
    offset: list[int]
    #: Per stage: positions in the utterance ``T_i``.
    lengths: list[int]
    #: ``(K, T')`` softmax of the chain output.
    probs: torch.Tensor


def _derivative(f, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Elementwise derivative of ``f`` at ``u`` (``v = f(u)``), as autograd computes it."""
    if isinstance(f, nn.ReLU):
        return (v > 0).to(v.dtype)
    if isinstance(f, Affine):
        return f.scale[:, None].expand_as(u[0]).unsqueeze(0).to(u.dtype)
    with torch.enable_grad():
        leaf = u.detach().requires_grad_(True)
        out = f(leaf.clone())  # clone: in-place activations may not modify a leaf
        (d,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    return d


def _backward_conv(gz: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """Gradient at a convolution's input window from the gradient at its output window.

    ``gz`` ``(n, C_out, W)``, ``weight`` ``(C_out, C_in, k)`` -> ``(n, C_in, (W-1)s + d(k-1) + 1)``.
    """
    n, c_out, w = gz.shape
    c_in, k = weight.shape[1], weight.shape[2]
    s, d = spec.stride, spec.dilation
    if w == 1:
        out = (gz[:, :, 0] @ weight.reshape(c_out, c_in * k)).view(n, c_in, k)  # (n, C_in, k)
        if d == 1:
            return out
        full = gz.new_zeros(n, c_in, d * (k - 1) + 1)
        full[:, :, ::d] = out
        return full
    if k == 1:
        # (n*W, C_out) @ (C_out, C_in) as one GEMM
        out = gz.transpose(1, 2).reshape(n * w, c_out) @ weight[:, :, 0]  # (n*W, C_in)
        out = out.view(n, w, c_in).transpose(1, 2)  # (n, C_in, W)
        if s == 1:
            return out.contiguous()
        full = gz.new_zeros(n, c_in, (w - 1) * s + 1)
        full[:, :, ::s] = out
        return full
    return F.conv_transpose1d(gz, weight, stride=s, dilation=d)


def cone_flops(chain: Chain) -> float:
    """Multiply-add FLOPs (2 per MAC) of one frame's cone backward, input layer included."""
    geom = chain.geometry
    total = 0.0
    for i in range(1, chain.num_stages + 1):
        w = chain.stages[i].weight
        assert w is not None
        c_out, c_in, k = w.shape
        total += 2.0 * c_out * c_in * k * geom.cone_width(i)
    return total


class ConeEngine:
    """Per-frame sensitivities of a Conv1d chain, restricted to each frame's cone.

    ``model``: a chain of Conv1d and elementwise modules (see :mod:`gradnap.engine.chain`);
    it is put in eval mode. ``layers``: names (``"input"`` and ``named_modules()`` names).
    ``target``: ``"prob"``, ``"logprob"`` or ``"logit"``. ``output``: the model's output
    kind (default ``model.output_kind``, else logits). ``workers``: threads that each take
    a share of the frames of a chunk with one intra-op thread each (``None``: one thread
    running torch's default intra-op parallelism).

    Raises :class:`~gradnap.engine.chain.ChainError` when the model is not such a chain.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        target: str = METHOD.target,
        output: str | None = None,
        workers: int | None = None,
    ) -> None:
        model.eval()
        self.model = model
        self.layers = check_layers(model, layers)
        self.chain = extract_chain(model, self.layers, output)
        self.output = self.chain.output
        check_target(target, self.output)
        self.target = target
        if workers is not None and workers < 1:
            raise GradnapError(f"workers: must be at least 1, got {workers}")
        self.workers = workers
        self.geometry = self.chain.geometry
        L = self.chain.num_stages
        self._pos = {name: self.chain.positions[name] for name in self.layers}
        self._width = [self.geometry.cone_width(i) for i in range(L + 1)]
        self._lo0 = [self.geometry.cone(0, i)[0] for i in range(L + 1)]
        out_jump = self.geometry.jump(L)
        self._step = [out_jump // self.geometry.jump(i) for i in range(L + 1)]
        w = self.chain.stages[1].weight
        assert w is not None
        self._device, self._dtype = w.device, w.dtype

    @property
    def flops_per_frame(self) -> float:
        """FLOPs of one frame's cone backward (see :func:`cone_flops`)."""
        return cone_flops(self.chain)

    # -- forward ---------------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> ForwardPass:
        """``x``: input spectrogram ``(F, T)``. Keeps the padded activation derivatives."""
        if x.dim() != 2:
            raise GradnapError(f"input: expected a (features, frames) tensor, got {tuple(x.shape)}")
        x = x.to(self._device, self._dtype)
        chain = self.chain
        L = chain.num_stages
        if not self._long_enough(x.shape[-1]):
            raise GradnapError(
                f"input: {x.shape[-1]} frames are too few for the model "
                f"(it needs at least {self._min_frames()})"
            )
        vals = chain.forward(x[None])  # [stage][j] (1, C_i, T_i)
        lengths = [v[0].shape[-1] for v in vals]
        t_out = lengths[L]
        offset, deriv, suffix = [], [], {}
        wanted = {p for p in self._pos.values()}
        for i, st in enumerate(chain.stages):
            lo = self._lo0[i]
            hi = self._step[i] * (t_out - 1) + lo + self._width[i] - 1
            pad_l, pad_r = max(0, -lo), max(0, hi - (lengths[i] - 1))
            offset.append(pad_l)
            m = len(st.pointwise)
            ds = [_derivative(f, vals[i][j], vals[i][j + 1]) for j, f in enumerate(st.pointwise)]
            # suffix products: after[j] = prod_{q > j} d_q  (positions j = 0..m)
            after: list[torch.Tensor | None] = [None] * (m + 1)
            acc: torch.Tensor | None = None
            for j in range(m - 1, -1, -1):
                acc = ds[j] if acc is None else acc * ds[j]
                after[j] = acc
            if i == 0:
                deriv.append(None)
            else:
                d0 = after[0] if after[0] is not None else torch.ones_like(vals[i][0])
                deriv.append(F.pad(d0[0], (pad_l, pad_r)))
            for j in range(m):
                if (i, j) in wanted and not (i >= 1 and j == 0):
                    suffix[(i, j)] = F.pad(after[j][0], (pad_l, pad_r))  # type: ignore[index]
        z = vals[L][-1][0]  # (K, T')
        probs = torch.softmax(z, dim=0)
        acts = {}
        for name, (i, j) in self._pos.items():
            acts[name] = x if name == INPUT_LAYER else vals[i][j][0]
        state = _ConeState(deriv, suffix, offset, lengths, probs)
        return ForwardPass(acts, probs, state)

    def _long_enough(self, frames: int) -> bool:
        """Whether every layer has at least one position for ``frames`` input frames."""
        for spec in self.geometry.layers:
            frames = spec.output_length(frames)
            if frames == 0:
                return False
        return True

    def _min_frames(self) -> int:
        t = 1
        while not self._long_enough(t):
            t += 1
        return t

    # -- backward --------------------------------------------------------------------------

    def seeds(
        self, probs: torch.Tensor, frames: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        """``d target[k, tau] / d z[:, tau]`` for the chain output ``z``: ``(n, K)``."""
        n = frames.shape[0]
        rows = torch.arange(n, device=probs.device)
        g = torch.zeros(n, probs.shape[0], device=probs.device, dtype=probs.dtype)
        if self.target == "logit":
            g[rows, classes] = 1.0
            return g
        p = probs[:, frames].T  # (n, K)
        g -= p
        g[rows, classes] += 1.0  # e_k - p: d log p_k / d z
        if self.target == "prob":
            g *= p[rows, classes][:, None]
        return g

    def sensitivities(
        self, fwd: ForwardPass, frames: torch.Tensor, classes: torch.Tensor
    ) -> dict[str, Window]:
        """Cone-wide windows per layer for target frames ``frames`` and classes ``classes``.

        ``frames``, ``classes``: ``(n,)`` int64. Returns name -> :class:`Window` with grads
        ``(n, C_l, W_l)`` and start ``(n,)`` = ``Geometry.cone(tau, l)[0]``.
        """
        state = fwd.state
        if not isinstance(state, _ConeState):
            raise GradnapError("sensitivities: the forward pass was not made by this engine")
        frames = torch.as_tensor(frames, dtype=torch.int64, device=self._device).flatten()
        classes = torch.as_tensor(classes, dtype=torch.int64, device=self._device).flatten()
        if frames.shape != classes.shape:
            raise GradnapError("sensitivities: frames and classes differ in length")
        t_out, n_cls = fwd.probs.shape[1], fwd.probs.shape[0]
        if frames.numel() and (frames.min() < 0 or frames.max() >= t_out):
            raise GradnapError(f"sensitivities: frames must lie in 0..{t_out - 1}")
        if classes.numel() and (classes.min() < 0 or classes.max() >= n_cls):
            raise GradnapError(f"sensitivities: classes must lie in 0..{n_cls - 1}")
        workers = self.workers or 1
        n = frames.shape[0]
        if workers == 1 or n < 2 * workers:
            return self._backward(state, frames, classes)
        bounds = [n * w // workers for w in range(workers + 1)]
        parts = [(frames[a:b], classes[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(lambda fc: self._backward(state, *fc), parts))
        finally:
            torch.set_num_threads(threads)
        return {
            name: Window(
                torch.cat([r[name].grads for r in results]),
                torch.cat([r[name].start for r in results]),
            )
            for name in self.layers
        }

    @torch.no_grad()
    def _backward(
        self, state: _ConeState, frames: torch.Tensor, classes: torch.Tensor
    ) -> dict[str, Window]:
        chain = self.chain
        L = chain.num_stages
        by_stage: dict[int, list[tuple[str, int]]] = {}
        for name, (i, j) in self._pos.items():
            by_stage.setdefault(i, []).append((name, j))
        out: dict[str, Window] = {}
        g = self.seeds(state.probs, frames, classes)[:, :, None]  # (n, K, 1)
        for i in range(L, -1, -1):
            st = chain.stages[i]
            m = len(st.pointwise)
            width = self._width[i]
            start = frames * self._step[i] + self._lo0[i]  # (n,)
            idx = start + state.offset[i]  # index of column 0 in the padded tensors
            for name, j in by_stage.get(i, []):
                if j == m:
                    gw = self._mask_edges(g, start, state.lengths[i])
                elif i >= 1 and j == 0:
                    gw = g * self._cut(state.deriv[i], idx, width)  # type: ignore[arg-type]
                else:
                    gw = g * self._cut(state.suffix[(i, j)], idx, width)
                out[name] = Window(gw, start)
            if i == 0:
                break
            d = state.deriv[i]
            assert d is not None and st.weight is not None and st.spec is not None
            gz = g * self._cut(d, idx, width)  # (n, C_i, W_i): gradient at the conv output
            g = _backward_conv(gz, st.weight, st.spec)  # (n, C_{i-1}, W_{i-1})
        return {name: out[name] for name in self.layers}

    @staticmethod
    def _cut(padded: torch.Tensor, idx: torch.Tensor, width: int) -> torch.Tensor:
        """Windows ``padded[:, idx[r] : idx[r] + width]`` as ``(n, C, width)``."""
        if idx.shape[0] > 1 and bool((idx[1:] - idx[:-1] == idx[1] - idx[0]).all()):
            step = int(idx[1] - idx[0])
            if step >= 0:  # evenly spaced windows: a strided view, no copy
                c, p = padded.shape
                return padded.as_strided(
                    (idx.shape[0], c, width), (step, p, 1), padded.storage_offset() + int(idx[0])
                )
        return padded.unfold(1, width, 1).permute(1, 0, 2).index_select(0, idx)

    @staticmethod
    def _mask_edges(g: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
        """Zero ``g`` ``(n, C, W)`` at positions outside ``0 .. length - 1``."""
        width = g.shape[-1]
        if int(start.min()) >= 0 and int(start.max()) + width <= length:
            return g
        pos = start[:, None] + torch.arange(width, device=g.device)  # (n, W)
        valid = ((pos >= 0) & (pos < length)).to(g.dtype)
        return g * valid[:, None, :]
