"""Windows at the alignment centre ``t*`` (docs/method.md §1.3).

For a chunk of examples of one utterance and one layer ``l``, the engine gives each
example's sensitivities in a window of positions (an :class:`~gradnap.engine.base.Window`);
:func:`align` finds the centre ``t*`` of each example and crops the layer's activations
and the sensitivities to ``W_l`` positions around it (an :class:`Aligned` batch).

Conventions:

* **Search range of t\\*.** ``t*`` is searched over the positions of the output frame's
  cone (its receptive field in layer ``l``, when the model's geometry is known) that lie
  inside the utterance, else over all positions of the engine's window inside the
  utterance. So the cone engine (cone-wide windows) and the generic engine (whole-layer
  windows) give the same ``t*``.
* **Ties** (docs/method.md §1.3). Of several searched positions with the maximal score,
  the one nearest the search range's centre (the cone's centre) wins, the earlier of two
  equally near. A flat score (the same at every searched position, e.g. no sensitivity
  at all) so leaves the example unaligned at the cone's centre. :class:`Aligned` counts
  both cases.
* **Centring.** The window has ``W`` columns; column ``j`` holds position
  ``t* + j - W // 2``. For odd ``W`` that is symmetric; for even ``W``, ``t*`` is the
  right one of the two middle columns (offsets ``-W/2 .. W/2 - 1``).
* **Counts.** Positions outside ``0 .. T_l - 1`` are not data: they add nothing to the
  sums and nothing to the per-position counts, so means are taken per position over the
  examples that have data there. Positions inside the utterance but outside the cone are
  data (their sensitivity is exactly 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from gradnap.engine.base import examples_major
from gradnap.errors import GradnapError

__all__ = ["Aligned", "Buffers", "Positions", "align", "recrop"]

log = logging.getLogger(__name__)


@dataclass
class Aligned:
    """A batch of ``n`` examples aligned in one layer (``W`` columns, see module doc)."""

    #: ``(n, C, W)`` activations at positions ``centre + j - W // 2``; 0 outside the utterance.
    act: torch.Tensor
    #: ``(n, C, W)`` sensitivities at the same positions; 0 outside the utterance.
    grad: torch.Tensor
    #: ``(n, W)`` bool: the position lies inside the utterance.
    valid: torch.Tensor
    #: ``(n,)`` int64: the alignment centre ``t*`` (a position of the layer).
    centre: torch.Tensor
    #: ``(n, C)`` float64: the sum of each neuron's squared activations over the window.
    sq: torch.Tensor
    #: No activation of the layer in this utterance is negative (e.g. after a ReLU).
    nonnegative: bool
    #: ``(n, We)`` the alignment score at positions ``score_start[i] + j`` (the searched
    #: positions; ``-inf`` elsewhere): where the model listens, for label times.
    score: torch.Tensor | None = None
    #: ``(n,)`` int64: the position of column 0 of ``score``.
    score_start: torch.Tensor | None = None
    #: Examples whose ``t*`` the tie rule chose among several tied positions.
    ties: int = 0
    #: Of those, examples whose score is flat (every searched position tied).
    flat: int = 0


class Buffers:
    """Arrays kept across the chunks of a collection, one per role (``"act"``, ``"grad"``,
    ...), so that a chunk's large arrays are written into memory the process has touched
    before: freshly mapped memory costs a page fault per few kilobytes on first write
    (about 0.3 ns per float32 element on the benchmark machine, as much as another pass
    over the data; the allocator returns large freed blocks to the system). An array is
    grown when a larger one is asked for; callers own its contents until their next
    request of the same role."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, role: str, shape: tuple[int, ...], dtype: np.dtype | type = np.float32):
        """A contiguous ``shape`` array of ``dtype`` for ``role`` (contents undefined)."""
        size = int(np.prod(shape))
        a = self._arrays.get(role)
        if a is None or a.size < size or a.dtype != np.dtype(dtype):
            a = self._arrays[role] = np.empty(size, dtype=dtype)
        return a[:size].reshape(shape)


class Positions:
    """One utterance's activations of one layer, zero-padded and laid out ``(T, C)`` so
    that windows of many examples are gathered in one pass.

    ``act``: ``(C, T)``. :meth:`windows` returns ``(n, C, W)`` with zeros outside
    ``0 .. T - 1``; the padding grows on demand.
    """

    def __init__(self, act: torch.Tensor, pad: int = 0) -> None:
        self.act = act
        self.channels, self.length = act.shape
        self._build(pad)

    def _build(self, pad: int) -> None:
        self.pad = pad
        # (C, T + 2p) float32, rows contiguous: a window of one example is C runs of W
        # consecutive values, which numpy's fancy indexing copies row by row (about 4x
        # faster than torch's unfold + index_select for these shapes)
        act = self.act.detach()
        if act.dtype not in (torch.float32, torch.float64):
            act = act.float()
        padded = torch.nn.functional.pad(act, (pad, pad))
        self._ac = np.ascontiguousarray(padded.cpu().numpy())
        self._views: dict[int, np.ndarray] = {}
        self._prefix: np.ndarray | None = None
        #: No activation is negative (e.g. after a ReLU).
        self.nonnegative = bool(self._ac.min(initial=0.0) >= 0)

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the windows (float32 or float64)."""
        return self._ac.dtype

    def _rows(self, start: torch.Tensor, width: int) -> np.ndarray:
        """Indices into the padded positions of ``start`` (the padding grown to cover
        windows of ``width``)."""
        if start.numel():
            need = max(0, -int(start.min()), int(start.max()) + width - self.length)
            if need > self.pad:
                self._build(max(need, 2 * self.pad))
        return (start + self.pad).numpy()

    def _view(self, width: int) -> np.ndarray:
        """``(C, T + 2p - width + 1, width)`` sliding windows of the padded positions."""
        view = self._views.get(width)
        if view is None:
            view = self._views[width] = sliding_window_view(self._ac, width, axis=1)
        return view

    def windows(
        self, start: torch.Tensor, width: int, out: np.ndarray | None = None
    ) -> torch.Tensor:
        """Activations at positions ``start[i] + j`` (``j < width``): ``(n, C, width)``
        (written into ``out``, a contiguous ``(n, C, width)`` array, when given)."""
        rows = self._rows(start, width)
        if out is None:
            out = np.ascontiguousarray(self._view(width)[:, rows].transpose(1, 0, 2))
        else:  # one slice copy per example (no temporary)
            ac = self._ac
            for i, r in enumerate(rows.tolist()):
                out[i] = ac[:, r : r + width]
        return torch.from_numpy(out)

    def square_sums(self, start: torch.Tensor, width: int) -> torch.Tensor:
        """``sum_j act[c, start[i] + j] ** 2`` over ``j < width``: ``(n, C)`` float64, from
        prefix sums of the squared activations (float64, per utterance), so no window is
        read."""
        rows = self._rows(start, width)
        if self._prefix is None:  # (T + 2p + 1, C): a window's sum is two rows apart
            sq = np.square(self._ac.T, dtype=np.float64)
            self._prefix = np.zeros((sq.shape[0] + 1, self.channels))
            np.cumsum(sq, axis=0, out=self._prefix[1:])
        p = self._prefix
        return torch.from_numpy(p[rows + width] - p[rows])

    def windows_by_channel(self, start: torch.Tensor, width: int) -> torch.Tensor:
        """The same windows channel-major, ``(C, n, width)``: a strided view (no copy)
        when the starts are evenly spaced (consecutive frames), else gathered."""
        rows = self._rows(start, width)
        ac = torch.from_numpy(self._ac)
        n = rows.shape[0]
        step = int(rows[1] - rows[0]) if n > 1 else 0
        if n <= 1 or (step >= 0 and bool((np.diff(rows) == step).all())):
            first = int(rows[0]) if n else 0
            return ac.as_strided((self.channels, n, width), (ac.stride(0), step, 1), first)
        return torch.from_numpy(self._view(width)[:, rows])


def recrop(grads: torch.Tensor, start: torch.Tensor, lo: torch.Tensor, width: int) -> torch.Tensor:
    """Window ``grads`` ``(n, C, We)`` (column 0 at position ``start[i]``) re-cut to
    ``width`` columns starting at position ``lo[i]``: ``(n, C, width)``, zeros where the
    old window has no column (e.g. a whole-layer window cut down to the cone)."""
    n, C, We = grads.shape
    k = (lo - start)[:, None] + torch.arange(width)  # (n, width) old columns
    inside = (k >= 0) & (k < We)
    out = grads.gather(2, k.clamp(0, We - 1)[:, None, :].expand(n, C, width))
    if not bool(inside.all()):
        out.mul_(inside[:, None, :].to(out.dtype))
    return out


#: Elements per block of the score computation (a few hundred KB: the block's
#: ``|S| * A`` stays in the core's cache instead of making three passes over memory).
_SCORE_BLOCK = 1 << 17


def _score(
    positions: Positions, grads: torch.Tensor, start: torch.Tensor, input_layer: bool
) -> torch.Tensor:
    """``sum_c |S[c, t]| * A[c, t]`` (``sum_c |S[c, t]|`` for the input) at the window's
    positions: ``(n, We)``.

    Computed in blocks of channels, whatever the memory layout of ``grads`` (``(n, C, We)``
    or, from the cone engine, a view of ``(C, We, n)``): each block's product is formed in
    the cache and summed over its channels, and the blocks' sums are added.
    """
    n, C, We = grads.shape
    acts = None if input_layer else positions.windows_by_channel(start, We)  # (C, n, We)
    inner = grads.permute(1, 2, 0)
    if inner.is_contiguous():  # frames innermost: work in (C, We, n)
        gc, ac = inner, None if acts is None else acts.transpose(1, 2)
    else:  # (C, n, We)
        gc, ac = grads.transpose(0, 1), acts
    total = gc.new_zeros(gc.shape[1:])
    block = max(1, _SCORE_BLOCK // max(1, n * We))
    buf = gc.new_empty((min(block, C),) + tuple(gc.shape[1:]))  # one block, reused
    for c0 in range(0, C, block):
        part = buf[: min(block, C - c0)]
        torch.abs(gc[c0 : c0 + block], out=part)
        if ac is not None:
            part.mul_(ac[c0 : c0 + block])
        total += part.sum(dim=0)
    return total.T.contiguous() if gc is inner else total


def _crop(
    grads: torch.Tensor,
    start: torch.Tensor,
    first: torch.Tensor,
    width: int,
    length: int,
    buffers: Buffers | None = None,
) -> torch.Tensor:
    """The sensitivities at positions ``first[i] + j`` (``j < width``) of windows ``grads``
    ``(n, C, We)`` whose column 0 is position ``start[i]``: ``(n, C, width)`` contiguous,
    zero at positions outside the window or outside ``0 .. length - 1``.

    ``grads`` is made contiguous first (:func:`~gradnap.engine.base.examples_major`); then
    every example is one slice copy (numpy: far less overhead per call than torch's
    indexing, and faster than ``gather`` for these shapes) into a zeroed array, or into
    the ``"grad"`` array of ``buffers`` with only the columns outside the copy zeroed.
    """
    n, C, We = grads.shape
    src = examples_major(grads).numpy()
    if buffers is None:
        out, zeroed = np.zeros((n, C, width), dtype=src.dtype), True
    else:
        out, zeroed = buffers.get("grad", (n, C, width), src.dtype), False
    f, off = first.numpy(), (first - start).numpy()  # column j is window column j + off
    lo = np.maximum(np.maximum(0, -off), -f)
    hi = np.minimum(np.minimum(width, We - off), length - f)
    for i, a, b, o in zip(range(n), lo.tolist(), hi.tolist(), off.tolist(), strict=True):
        if a < b:
            out[i, :, a:b] = src[i, :, a + o : b + o]
            if not zeroed:
                out[i, :, :a] = 0.0
                out[i, :, b:] = 0.0
        elif not zeroed:
            out[i] = 0.0
    return torch.from_numpy(out)


def align(
    act: torch.Tensor | Positions,
    grads: torch.Tensor,
    start: torch.Tensor,
    width: int,
    *,
    input_layer: bool,
    search: tuple[torch.Tensor, torch.Tensor] | None = None,
    buffers: Buffers | None = None,
) -> Aligned:
    """Align ``n`` examples in one layer (docs/method.md §1.3).

    ``act``: the layer's activations ``(C, T)`` (the spectrogram ``(F, T)`` for the
    input), or their :class:`Positions` (reused across the chunks of an utterance).
    ``grads``: ``(n, C, We)`` sensitivities at positions ``start[i] + j`` (the engine's
    window; zero outside the utterance), any memory layout (the cone engine's are views
    of ``(C, We, n)`` buffers). ``start``: ``(n,)`` int64. ``width``: ``W``.
    ``search``: inclusive ``(lo, hi)`` ``(n,)`` position ranges to search ``t*`` in (the
    cone), or ``None`` for the whole window. ``buffers``: the cropped windows are written
    into its ``"act"`` and ``"grad"`` arrays (valid until the next chunk).

    Score per position: ``sum_c |S[c, t]| * A[c, t]`` for a layer, ``sum_f |S[f, t]|``
    for the input; ``t*`` is the position with the maximal score among the searched
    positions inside the utterance; of several, the one nearest the centre of ``search``
    (of the window without it).
    """
    positions = act if isinstance(act, Positions) else Positions(act)
    n, C, We = grads.shape
    T = positions.length
    if positions.channels != C:
        raise GradnapError(
            f"align: activations have {positions.channels} channels, sensitivities {C}"
        )
    start = start.to(torch.int64)
    pos = start[:, None] + torch.arange(We)  # (n, We)
    ok = (pos >= 0) & (pos < T)
    if search is not None:
        lo, hi = search
        ok &= (pos >= lo[:, None]) & (pos <= hi[:, None])
    score = _score(positions, grads, start, input_layer)  # (n, We)
    score = score.masked_fill_(~ok, float("-inf"))
    best, col = score.max(dim=1)
    ties, flat = _break_ties(score, ok, best, col, start, search)
    centre = start + col
    empty = ~ok.any(dim=1)
    if bool(empty.any()):  # nothing searchable (cannot happen for real cones): clamp
        centre = torch.where(empty, start.clamp(0, max(T - 1, 0)), centre)

    first = centre - width // 2  # position of column 0
    q = first[:, None] + torch.arange(width)  # (n, W) positions
    valid = (q >= 0) & (q < T)
    act_out = None if buffers is None else buffers.get("act", (n, C, width), positions.dtype)
    act_crop = positions.windows(first, width, act_out)  # (n, C, W); 0 outside the utterance
    grad_crop = _crop(grads, start, first, width, T, buffers)
    sq = positions.square_sums(first, width)
    return Aligned(
        act_crop, grad_crop, valid, centre, sq, positions.nonnegative, score, start, ties, flat
    )


def _break_ties(
    score: torch.Tensor,
    ok: torch.Tensor,
    best: torch.Tensor,
    col: torch.Tensor,
    start: torch.Tensor,
    search: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[int, int]:
    """The tie rule (docs/method.md §1.3): where several searched positions have the
    maximal score, set ``col`` ``(n,)`` (in place) to the one nearest the centre of the
    search range, the earlier of two equally near. ``score``: ``(n, We)``, ``-inf`` where
    not ``ok``; ``best``: ``(n,)`` its maxima. Returns ``(ties, flat)``: examples with
    several maximal positions, and of those the ones with the same score everywhere."""
    tied = (score == best[:, None]) & ok  # (n, We)
    several = tied.sum(dim=1) > 1
    if not bool(several.any()):  # the common case: one maximum
        return 0, 0
    rows = several.nonzero().flatten()
    if search is None:  # the window's centre column
        mid = torch.full((len(rows),), score.shape[1] // 2, dtype=torch.int64)
    else:  # the cone's centre (the right one of two middle positions) as a column
        lo, hi = search[0][rows], search[1][rows]
        mid = lo + (hi - lo + 1) // 2 - start[rows]
    j = torch.arange(score.shape[1])
    # distance 2|j - mid| (+1 right of mid: the earlier of two equally near wins)
    dist = 2 * (j - mid[:, None]).abs() + (j > mid[:, None])
    dist = dist.masked_fill_(~tied[rows], torch.iinfo(torch.int64).max)
    col[rows] = dist.argmin(dim=1)
    flat = int((tied[rows] == ok[rows]).all(dim=1).sum())
    return len(rows), flat
