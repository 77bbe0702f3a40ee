"""The cone engine: exact per-frame sensitivities restricted to each frame's receptive field.

The method is described in ``docs/method.md`` §4, the implementation and its measured
speed in ``docs/engine.md``. For a model that is a chain of Conv1d layers and
elementwise operations (:mod:`gradnap.engine._chain`):

1. :meth:`ConeEngine.forward` runs the chain once without gradients (each convolution as
   im2col GEMMs in time slices on the worker threads) and keeps, per stage ``i``, the
   activation derivative ``D_i = dA_i/dZ_i`` (the ReLU mask; the product of the
   derivatives when a stage has several elementwise operations), zero-padded outside the
   utterance so that every frame's cone can be cut from it.
2. :meth:`ConeEngine.sensitivities` runs a hand-written backward for a chunk of ``n``
   target frames, each restricted to its cone: a seed at the output (``d target / d z``,
   e.g. ``p_k (e_k - p)`` for ``prob``), then per stage ``i = L..1``:
   ``gZ = gA * D_i[cone]`` and ``gA_{i-1} = conv_transpose(gZ, W_i)``. Gradients are kept
   position-major, ``(C, W, n)`` with the frames innermost, so that the transposed
   convolution is one GEMM per kernel tap (``W[:, :, j].T @ gZ`` into a column slice of
   the output, the first tap writing with ``beta = 0`` so the output needs no zero fill;
   strided layers per stride phase) — or a single GEMM when the cone is one position
   wide (the k=1 and k=32 layers of Wav2Letter). The window of stage ``i`` for frame
   ``tau`` starts at ``Geometry.cone(tau, i)[0]`` and is ``Geometry.cone_width(i)`` wide.
3. With ``workers``, the frames of a chunk are split between single-threaded worker
   threads that write into shared result buffers; the threads are kept for the engine's
   lifetime (see :class:`ConeEngine`).

Positions outside the utterance are zero in ``D`` and zeroed in returned windows, so the
result equals autograd on the whole utterance up to float rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gradnap.defaults import METHOD
from gradnap.engine._chain import Affine, Chain, extract_chain
from gradnap.engine._layers import check_layers, check_target
from gradnap.engine.base import INPUT_LAYER, ForwardPass, Window, examples_major
from gradnap.errors import GradnapError
from gradnap.geometry import ConvSpec
from gradnap.threads import WorkerPool, one_thread

__all__ = ["ConeEngine", "cone_flops"]

log = logging.getLogger(__name__)

#: Frames of a chunk per work item of a worker thread (items are split evenly between
#: the workers; 128-frame chunks on two workers: one item each).
_PIECE_FRAMES = 64
#: Least output positions per time slice of the forward pass's elementwise operations.
_SLICE_POSITIONS = 64


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


class _TapWeights:
    """One convolution's weights laid out for the backward GEMMs.

    ``taps``: ``(k, C_in, C_out)``, ``taps[j] = W[:, :, j].T``; or, when the cone at the
    conv's output is one position wide and the kernel is not dilated, ``cols``:
    ``(C_in * k, C_out)`` so that one GEMM gives the whole ``(C_in, k)`` window.
    """

    def __init__(self, weight: torch.Tensor, spec: ConvSpec, width: int) -> None:
        c_out, c_in, k = weight.shape
        self.c_in, self.k, self.spec, self.width = c_in, k, spec, width
        self.cols: torch.Tensor | None = None
        self.taps: torch.Tensor | None = None
        if width == 1 and spec.dilation == 1:
            self.cols = weight.permute(1, 2, 0).reshape(c_in * k, c_out).contiguous()
        else:
            self.taps = weight.permute(2, 1, 0).contiguous()

    def backward(
        self, gz: torch.Tensor, pool: WorkerPool | None = None, workers: int = 1
    ) -> torch.Tensor:
        """Transposed convolution in position-major layout.

        ``gz``: ``(C_out, W * n)`` contiguous, the gradient at the conv output for ``n``
        frames at ``W`` positions (frames innermost). Returns ``(C_in, W', n)`` with
        ``W' = (W - 1) * stride + dilation * (k - 1) + 1``. Tap ``j`` adds
        ``W[:, :, j].T @ gz`` at output positions ``t * stride + j * dilation``: one GEMM
        per tap into a column slice of the output (per stride phase), no im2col. With
        ``pool``, a one-wide layer's single GEMM is split by rows between ``workers``
        threads of it.
        """
        w = self.width
        n = gz.shape[1] // w
        cols = self.cols
        if cols is not None:  # W == 1: a single GEMM, (C_in * k, n) = (C_in, k, n)
            if pool is None or workers <= 1:
                return (cols @ gz).view(self.c_in, self.k, n)
            # split by rows between the workers: each packs only its rows of the weight
            out = gz.new_empty(cols.shape[0], n)
            rows = [out.shape[0] * q // workers for q in range(workers + 1)]

            def part(r: tuple[int, int]) -> None:
                with torch.no_grad():
                    torch.mm(cols[r[0] : r[1]], gz, out=out[r[0] : r[1]])

            pool.map(part, list(zip(rows, rows[1:], strict=False)), workers)
            return out.view(self.c_in, self.k, n)
        assert self.taps is not None
        s, d, k = self.spec.stride, self.spec.dilation, self.k
        w_out = (w - 1) * s + d * (k - 1) + 1
        if s == 1:
            out = gz.new_empty(self.c_in, w_out * n)
            out[:, w * n :].zero_()  # tap 0 (beta = 0) writes positions 0 .. W - 1
            for j in range(k):
                o = j * d
                out[:, o * n : (o + w) * n].addmm_(self.taps[j], gz, beta=0.0 if j == 0 else 1.0)
            return out.view(self.c_in, w_out, n)
        out = gz.new_empty(self.c_in, w_out, n)
        for ph in range(s):
            taps = [j for j in range(k) if (j * d) % s == ph]
            count = len(range(ph, w_out, s))  # output positions of this phase
            if not taps:
                out[:, ph::s] = 0.0
                continue
            buf = gz.new_empty(self.c_in, count * n)
            q0 = (taps[0] * d) // s  # the first tap (beta = 0) writes q0 .. q0 + W - 1
            buf[:, : q0 * n].zero_()
            buf[:, (q0 + w) * n :].zero_()
            for j in taps:
                q = (j * d) // s
                buf[:, q * n : (q + w) * n].addmm_(
                    self.taps[j], gz, beta=0.0 if j == taps[0] else 1.0
                )
            out[:, ph::s] = buf.view(self.c_in, count, n)
        return out


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

    ``model``: a chain of Conv1d and elementwise modules (see :mod:`gradnap.engine._chain`);
    it is put in eval mode. ``layers``: names (``"input"`` and ``named_modules()`` names).
    ``target``: ``"prob"``, ``"logprob"`` or ``"logit"``. ``output``: the model's output
    kind (default ``model.output_kind``, else logits). ``workers``: threads that each take
    a share of a chunk's frames, each with one intra-op thread (``torch.set_num_threads(1)``
    for the duration of the call); ``None`` (default) = as many as torch's intra-op
    threads on CPU, 1 on other devices; ``0`` = no workers, torch's own intra-op
    parallelism. Independent single-threaded GEMMs beat one multi-threaded GEMM on small
    machines and stay fast when other processes compete for the cores. ``workers=1`` runs
    in the calling thread.

    The worker threads are started on first use and kept for later calls (one pool per
    engine); :meth:`close` stops them, and they stop by themselves when the engine is
    garbage-collected or the interpreter exits. A pickled engine carries no threads, and
    a forked child starts its own.

    ``chain``: the model's :class:`~gradnap.engine._chain.Chain` when the caller has it.

    Raises :class:`~gradnap.engine._chain.ChainError` when the model is not such a chain.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        target: str = METHOD.target,
        output: str | None = None,
        workers: int | None = None,
        chain: Chain | None = None,
    ) -> None:
        model.eval()
        self.model = model
        self.layers = check_layers(model, layers)
        #: The model as a Conv1d chain: ``chain`` when given (already extracted and checked
        #: for these layers by :func:`gradnap.engine.make_engine`), else extracted here.
        self.chain = chain if chain is not None else extract_chain(model, self.layers, output)
        self.output = self.chain.output
        check_target(target, self.output)
        self.target = target
        if workers is not None and workers < 0:
            raise GradnapError(f"workers: must be 0 or more, got {workers}")
        self.workers = workers
        self.geometry = self.chain.geometry
        L = self.chain.num_stages
        self._pos = {name: self.chain.positions[name] for name in self.layers}
        self._width = [self.geometry.cone_width(i) for i in range(L + 1)]
        self._lo0 = [self.geometry.cone(0, i)[0] for i in range(L + 1)]
        out_jump = self.geometry.jump(L)
        self._step = [out_jump // self.geometry.jump(i) for i in range(L + 1)]
        self._weights: list[_TapWeights | None] = [None]
        for i, st in enumerate(self.chain.stages[1:], start=1):
            assert st.weight is not None and st.spec is not None
            self._weights.append(_TapWeights(st.weight, st.spec, self._width[i]))
        #: Stages ``_head + 1 .. L`` (the output end) are one-wide single GEMMs: with
        #: workers they run once for the whole chunk, each GEMM split by rows.
        self._head = L
        while self._head >= 1 and getattr(self._weights[self._head], "cols", None) is not None:
            self._head -= 1
        self._by_stage: dict[int, list[tuple[str, int]]] = {}
        for name, (i, j) in self._pos.items():
            self._by_stage.setdefault(i, []).append((name, j))
        #: Per stage ``i >= 1``: the weight as a ``(C_out, C_in * k)`` matrix for the
        #: forward pass's im2col GEMM.
        self._fwd_weight: list[torch.Tensor | None] = [None]
        for st in self.chain.stages[1:]:
            assert st.weight is not None
            self._fwd_weight.append(st.weight.reshape(st.weight.shape[0], -1).contiguous())
        w = self.chain.stages[1].weight
        assert w is not None
        self._device, self._dtype = w.device, w.dtype
        self._workers = WorkerPool("gradnap-cone")

    # -- worker threads --------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker threads (a later call starts them again)."""
        self._workers.close()

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
        if not self._long_enough(x.shape[-1]):
            raise GradnapError(
                f"input: {x.shape[-1]} frames are too few for the model "
                f"(it needs at least {self._min_frames()})"
            )
        workers = self.resolved_workers()
        if workers == 0:
            return self._forward(x, chain.forward(x[None]))
        # with workers, everything runs single-threaded: each stage in time slices on the
        # workers (convolution, elementwise operations, derivatives), the rest here
        with one_thread():
            vals, deriv = self._sliced_forward(x[None], workers)
            return self._forward(x, vals, deriv)

    def _pads(self, t_in: int) -> list[tuple[int, int]]:
        """Per stage: zero padding ``(left, right)`` of the derivatives so that every output
        frame's cone can be cut from them, for ``t_in`` input frames."""
        t_out = self.geometry.output_length(t_in)
        pads = []
        for i in range(self.chain.num_stages + 1):
            lo = self._lo0[i]
            hi = self._step[i] * (t_out - 1) + lo + self._width[i] - 1
            length = self.geometry.output_length(t_in, i)
            pads.append((max(0, -lo), max(0, hi - (length - 1))))
        return pads

    def _forward(
        self,
        x: torch.Tensor,
        vals: list[list[torch.Tensor]],
        deriv: list[torch.Tensor | None] | None = None,
    ) -> ForwardPass:
        """Derivatives, padding and the :class:`ForwardPass` from the chain's values
        (``vals[i][j]``: ``(1, C_i, T_i)``); ``deriv``: the padded stage derivatives when
        already computed (:meth:`_sliced_forward`)."""
        chain = self.chain
        L = chain.num_stages
        lengths = [v[0].shape[-1] for v in vals]
        pads = self._pads(x.shape[-1])
        offset = [pad_l for pad_l, _ in pads]
        given = deriv is not None
        if deriv is None:
            deriv = [None] * (L + 1)
        suffix: dict[tuple[int, int], torch.Tensor] = {}
        wanted = {p for p in self._pos.values()}
        for i, st in enumerate(chain.stages):
            pad_l, pad_r = pads[i]
            m = len(st.pointwise)
            need = [j for j in range(m) if (i, j) in wanted and not (i >= 1 and j == 0)]
            if not need and (given or i == 0):
                continue
            ds = [_derivative(f, vals[i][j], vals[i][j + 1]) for j, f in enumerate(st.pointwise)]
            # suffix products: after[j] = prod_{q > j} d_q  (positions j = 0..m)
            after: list[torch.Tensor | None] = [None] * (m + 1)
            acc: torch.Tensor | None = None
            for j in range(m - 1, -1, -1):
                acc = ds[j] if acc is None else acc * ds[j]
                after[j] = acc
            if i >= 1 and not given:
                d0 = after[0] if after[0] is not None else torch.ones_like(vals[i][0])
                deriv[i] = F.pad(d0[0], (pad_l, pad_r))
            for j in need:
                suffix[(i, j)] = F.pad(after[j][0], (pad_l, pad_r))  # type: ignore[index]
        z = vals[L][-1][0]  # (K, T')
        probs = torch.softmax(z, dim=0)
        acts = {}
        for name, (i, j) in self._pos.items():
            acts[name] = x if name == INPUT_LAYER else vals[i][j][0]
        state = _ConeState(deriv, suffix, offset, lengths, probs)
        return ForwardPass(acts, probs, state)

    def _sliced_forward(
        self, x: torch.Tensor, workers: int
    ) -> tuple[list[list[torch.Tensor]], list[torch.Tensor | None]]:
        """:meth:`Chain.forward` on the single-threaded workers (:meth:`gradnap.threads.WorkerPool.map`).
        ``x``: ``(1, F, T)``.

        Per stage: the convolution as one im2col GEMM, ``(C_out, C_in * k) @ (C_in * k,
        T_out)``, split between the workers by output channels (faster than ``conv1d`` for
        the long kernels, k = 48 and 32; split by time, every slice's GEMM packed the whole
        weight, which cost as much as the product for the 2000 x 8000 layer); then the
        elementwise operations and the product of their derivatives in time slices,
        written into the stage's values and its padded derivative ``(C, P)``. Returns the
        values ``vals[i][j]`` ``(1, C_i, T_i)`` and the padded derivatives (None for
        stage 0)."""
        out: list[list[torch.Tensor]] = []
        deriv: list[torch.Tensor | None] = [None]
        pads = self._pads(x.shape[-1])
        a = x
        for i, st in enumerate(self.chain.stages):
            if st.weight is None:  # stage 0: elementwise operations on the input, if any
                vals = [a]
                for f in st.pointwise:
                    u = vals[-1].clone() if getattr(f, "inplace", False) else vals[-1]
                    vals.append(f(u))
                out.append(vals)
                a = vals[-1]
                continue
            spec = st.spec
            assert spec is not None
            xp = F.pad(a[0], (spec.pad_left, spec.pad_right))  # (C_in, P_in)
            t_out = spec.output_length(a.shape[-1])
            c_out = st.weight.shape[0]
            vals = [xp.new_empty(1, c_out, t_out) for _ in range(len(st.pointwise) + 1)]
            pad_l, pad_r = pads[i]
            d = xp.new_empty(c_out, pad_l + t_out + pad_r)  # (C_out, P)
            d[:, :pad_l] = 0.0
            d[:, pad_l + t_out :] = 0.0
            wmat = self._fwd_weight[i]
            assert wmat is not None
            # im2col: (C_in, k, T_out) view, column t holds input positions t * s + j * d
            (c_in, _), (sc, sp) = xp.shape, xp.stride()
            cols = xp.as_strided(
                (c_in, spec.kernel, t_out),
                (sc, spec.dilation * sp, spec.stride * sp),
                xp.storage_offset(),
            ).reshape(c_in * spec.kernel, t_out)  # (C_in * k, T_out)
            z = vals[0][0]  # (C_out, T_out)
            # the GEMM split by output channels: each worker packs only its rows of the
            # weight (packing the whole weight per time slice cost as much as the product)
            rows = (
                [c_out * w // workers for w in range(workers + 1)]
                if c_out >= 8 * workers
                else [0, c_out]
            )

            def gemm(r, z=z, cols=cols, wmat=wmat, bias=st.bias):
                with torch.no_grad():
                    zs = z[r[0] : r[1]]
                    if bias is None:
                        zs.addmm_(wmat[r[0] : r[1]], cols, beta=0.0)
                    else:
                        zs.copy_(bias[r[0] : r[1], None].expand_as(zs))
                        zs.addmm_(wmat[r[0] : r[1]], cols)

            self._workers.map(gemm, list(zip(rows, rows[1:], strict=False)), workers)
            # elementwise operations and derivatives in time slices
            parts = max(1, min(workers, t_out // _SLICE_POSITIONS))
            bounds = [t_out * w // parts for w in range(parts + 1)]

            def stage(lo_hi, vals=vals, d=d, pad_l=pad_l, st=st):
                lo, hi = lo_hi
                with torch.no_grad():
                    ds = []
                    u = vals[0][:, :, lo:hi]
                    for j, f in enumerate(st.pointwise):
                        v = f(u.clone() if getattr(f, "inplace", False) else u)
                        ds.append(_derivative(f, u, v))
                        vals[j + 1][:, :, lo:hi] = v
                        u = vals[j + 1][:, :, lo:hi]
                    dst = d[:, pad_l + lo : pad_l + hi]
                    if not ds:
                        dst.fill_(1.0)
                        return
                    acc = ds[-1]  # prod_j d_j, in _forward's order
                    for dj in reversed(ds[:-1]):
                        acc = acc * dj
                    dst.copy_(acc[0])

            self._workers.map(stage, list(zip(bounds, bounds[1:], strict=False)), workers)
            out.append(vals)
            deriv.append(d)
            a = vals[-1]
        return out, deriv

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
        self,
        fwd: ForwardPass,
        frames: torch.Tensor,
        classes: torch.Tensor,
        *,
        contiguous: bool = False,
    ) -> dict[str, Window]:
        """Cone-wide windows per layer for target frames ``frames`` and classes ``classes``.

        ``frames``, ``classes``: ``(n,)`` int64. Returns name -> :class:`Window` with grads
        ``(n, C_l, W_l)`` and start ``(n,)`` = ``Geometry.cone(tau, l)[0]``. The grads are
        views of ``(C_l, W_l, n)`` buffers (frames innermost, as computed); with
        ``contiguous``, contiguous ``(n, C_l, W_l)`` tensors instead (the worker threads
        transpose their frames' columns while copying them out, which costs them little
        more than the copy they make anyway; the collector asks for this).
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
        workers = self.resolved_workers()
        n = frames.shape[0]
        if n == 0:
            return {
                name: Window(
                    fwd.probs.new_zeros(0, fwd.activations[name].shape[0], self._width[i]),
                    frames.clone(),
                )
                for name, (i, _) in self._pos.items()
            }
        if workers == 0:
            return self._whole(state, frames, classes, contiguous)
        # work items of _PIECE_FRAMES frames, the same number per worker, at least 8 frames
        per = max(1, n // (_PIECE_FRAMES * workers))
        parts_n = max(1, min(workers * per, n // 8))
        bounds = [n * w // parts_n for w in range(parts_n + 1)]
        with one_thread():
            if parts_n == 1:
                return self._whole(state, frames, classes, contiguous)
            # each work item writes its frames' columns of one (C, W, n) buffer per layer
            # (contiguous: its rows of one (n, C * W) buffer)
            bufs = {}
            for name, (i, _) in self._pos.items():
                c, w = fwd.activations[name].shape[0], self._width[i]
                bufs[name] = fwd.probs.new_empty((n, c * w) if contiguous else (c, w, n))

            # the one-wide stages at the output end for the whole chunk, their GEMMs split
            # by rows (each worker packs half the weight, for twice the columns), then the
            # rest in work items of frames
            L = self.chain.num_stages
            g = self._seed_grad(state, frames, classes)
            with torch.no_grad():
                g = self._stages(
                    state, frames, g, L, self._head, None, bufs, 0, contiguous, workers
                )

            def work(ab: tuple[int, int]) -> None:
                a, b = ab
                with torch.no_grad():
                    self._stages(
                        state, frames[a:b], g[:, :, a:b], self._head, -1, None, bufs, a, contiguous
                    )

            self._workers.map(work, list(zip(bounds, bounds[1:], strict=False)), workers)
        out = {}
        for name, (i, _) in self._pos.items():
            c, w = fwd.activations[name].shape[0], self._width[i]
            grads = bufs[name].view(n, c, w) if contiguous else bufs[name].permute(2, 0, 1)
            out[name] = Window(grads, frames * self._step[i] + self._lo0[i])
        return out

    def _whole(
        self, state: _ConeState, frames: torch.Tensor, classes: torch.Tensor, contiguous: bool
    ) -> dict[str, Window]:
        """:meth:`_backward` of all frames in the calling thread."""
        wins = self._backward(state, frames, classes)
        if not contiguous:
            return wins
        return {name: Window(examples_major(w.grads), w.start) for name, w in wins.items()}

    def resolved_workers(self) -> int:
        """Worker threads used by :meth:`sensitivities` (0 = torch's intra-op threads)."""
        if self.workers is not None:
            return self.workers
        return torch.get_num_threads() if self._device.type == "cpu" else 0

    @torch.no_grad()
    def _backward(
        self, state: _ConeState, frames: torch.Tensor, classes: torch.Tensor
    ) -> dict[str, Window]:
        """The cone backward for ``n`` frames in the calling thread: windows are
        ``(n, C, W)`` views of the ``(C, W, n)`` gradients (see :meth:`_stages`)."""
        out: dict[str, Window] = {}
        g = self._seed_grad(state, frames, classes)
        self._stages(state, frames, g, self.chain.num_stages, -1, out=out)
        return {name: out[name] for name in self.layers if name in out}

    def _seed_grad(
        self, state: _ConeState, frames: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        """The gradient at the chain output for ``n`` frames: ``(K, 1, n)``."""
        seeds = self.seeds(state.probs, frames, classes)  # (n, K)
        return seeds.T.contiguous().view(-1, 1, frames.shape[0])

    def _stages(
        self,
        state: _ConeState,
        frames: torch.Tensor,
        g: torch.Tensor,
        top: int,
        stop: int,
        out: dict[str, Window] | None = None,
        into: dict[str, torch.Tensor] | None = None,
        column: int = 0,
        transpose: bool = False,
        workers: int = 1,
    ) -> torch.Tensor:
        """Stages ``top`` down to ``stop + 1`` of the cone backward for ``n`` frames, from
        ``g`` ``(C, W, n)``, the gradient at stage ``top``'s output (not modified); returns
        the gradient at stage ``stop``'s output (the input's at ``stop = 0``; nothing
        more at ``stop = -1``).

        Gradients live in position-major layout ``(C, W, n)`` (frames innermost) so every
        transposed convolution is a few large GEMMs. Each requested layer's window goes
        to ``out`` as a :class:`Window` holding an ``(n, C, W)`` view, or with ``into``
        (layer -> ``(C, W, N)`` buffer) is copied to columns ``column .. column + n - 1``
        of its buffer (``transpose``: to rows of an ``(N, C * W)`` buffer). ``workers``:
        split the one-wide stages' GEMMs by rows between the engine's worker threads.
        """
        n = frames.shape[0]
        for i in range(top, stop, -1):
            st = self.chain.stages[i]
            m = len(st.pointwise)
            width = self._width[i]
            start = frames * self._step[i] + self._lo0[i]  # (n,)
            idx = start + state.offset[i]  # index of column 0 in the padded tensors
            aliased = i == top  # g is the caller's (the seeds, a slice): never in place
            for name, j in self._by_stage.get(i, []):
                if j == m:
                    gw = self._mask_edges(g, start, state.lengths[i])
                elif i >= 1 and j == 0:
                    gw = g * self._cut(state.deriv[i], idx, width)  # type: ignore[arg-type]
                else:
                    gw = g * self._cut(state.suffix[(i, j)], idx, width)
                if into is None:
                    assert out is not None
                    out[name] = Window(gw.permute(2, 0, 1), start)  # (n, C, W)
                    aliased = aliased or gw is g
                elif transpose:  # rows of an (N, C * W) buffer
                    into[name][column : column + n].copy_(gw.reshape(-1, n).T)
                else:
                    into[name][:, :, column : column + n].copy_(gw)
            if i == 0:
                break
            d = state.deriv[i]
            weights = self._weights[i]
            assert d is not None and weights is not None
            if aliased:  # g is a returned window or the caller's: keep it
                gz = torch.mul(g, self._cut(d, idx, width)).contiguous()  # (C_i, W_i, n)
            else:  # g is this call's own buffer: mask it in place
                gz = g.mul_(self._cut(d, idx, width))
            pool = self._workers if workers > 1 else None
            g = weights.backward(gz.view(gz.shape[0], width * n), pool, workers)
        return g

    @staticmethod
    def _cut(padded: torch.Tensor, idx: torch.Tensor, width: int) -> torch.Tensor:
        """Windows ``padded[:, idx[r] : idx[r] + width]`` as ``(C, width, n)``."""
        c, p = padded.shape
        n = idx.shape[0]
        step = int(idx[1] - idx[0]) if n > 1 else 0
        if n == 1 or (step >= 0 and bool((idx[1:] - idx[:-1] == step).all())):
            # evenly spaced windows (consecutive frames): a strided view, no copy
            return padded.as_strided(
                (c, width, n), (p, 1, step), padded.storage_offset() + int(idx[0])
            )
        cols = idx[None, :] + torch.arange(width, device=idx.device)[:, None]  # (W, n)
        return padded[:, cols]

    @staticmethod
    def _mask_edges(g: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
        """Zero ``g`` ``(C, W, n)`` at positions outside ``0 .. length - 1``."""
        width = g.shape[1]
        if int(start.min()) >= 0 and int(start.max()) + width <= length:
            return g
        pos = start[None, :] + torch.arange(width, device=g.device)[:, None]  # (W, n)
        valid = ((pos >= 0) & (pos < length)).to(g.dtype)
        return g * valid
