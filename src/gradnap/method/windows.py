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

from gradnap.errors import GradnapError

__all__ = ["Aligned", "Positions", "align", "recrop"]

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
    #: ``(n, We)`` the alignment score at positions ``score_start[i] + j`` (the searched
    #: positions; ``-inf`` elsewhere): where the model listens, for label times.
    score: torch.Tensor | None = None
    #: ``(n,)`` int64: the position of column 0 of ``score``.
    score_start: torch.Tensor | None = None
    #: Examples whose ``t*`` the tie rule chose among several tied positions.
    ties: int = 0
    #: Of those, examples whose score is flat (every searched position tied).
    flat: int = 0


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

    def windows(self, start: torch.Tensor, width: int) -> torch.Tensor:
        """Activations at positions ``start[i] + j`` (``j < width``): ``(n, C, width)``."""
        if start.numel():
            need = max(0, -int(start.min()), int(start.max()) + width - self.length)
            if need > self.pad:
                self._build(max(need, 2 * self.pad))
        view = self._views.get(width)
        if view is None:  # (C, T + 2p - width + 1, width), no copy
            view = self._views[width] = sliding_window_view(self._ac, width, axis=1)
        rows = (start + self.pad).numpy()
        out = np.ascontiguousarray(view[:, rows].transpose(1, 0, 2))  # (n, C, width)
        return torch.from_numpy(out)


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


def align(
    act: torch.Tensor | Positions,
    grads: torch.Tensor,
    start: torch.Tensor,
    width: int,
    *,
    input_layer: bool,
    search: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Aligned:
    """Align ``n`` examples in one layer (docs/method.md §1.3).

    ``act``: the layer's activations ``(C, T)`` (the spectrogram ``(F, T)`` for the
    input), or their :class:`Positions` (reused across the chunks of an utterance).
    ``grads``: ``(n, C, We)`` sensitivities at positions ``start[i] + j`` (the engine's
    window; zero outside the utterance). ``start``: ``(n,)`` int64. ``width``: ``W``.
    ``search``: inclusive ``(lo, hi)`` ``(n,)`` position ranges to search ``t*`` in (the
    cone), or ``None`` for the whole window.

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
    if not grads.is_contiguous():  # engines may hand out other layouts
        inner = grads.permute(1, 2, 0)  # (C, We, n)
        if inner.is_contiguous():  # frames innermost (the cone engine): a 2-D transpose
            grads = inner.view(C * We, n).T.contiguous().view(n, C, We)  # is ~2x faster
        else:
            grads = grads.contiguous()
    start = start.to(torch.int64)
    pos = start[:, None] + torch.arange(We)  # (n, We)
    ok = (pos >= 0) & (pos < T)
    if search is not None:
        lo, hi = search
        ok &= (pos >= lo[:, None]) & (pos <= hi[:, None])
    g_abs = grads.abs()  # (n, C, We)
    if not input_layer:
        g_abs.mul_(positions.windows(start, We))
    score = g_abs.sum(dim=1)  # (n, We)
    del g_abs
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
    act_crop = positions.windows(first, width)  # (n, C, W); zero outside the utterance
    k = q - start[:, None]  # column in the engine window
    inwin = (k >= 0) & (k < We) & valid
    grad_crop = grads.gather(2, k.clamp(0, We - 1)[:, None, :].expand(n, C, width))
    if not bool(inwin.all()):
        grad_crop.mul_(inwin[:, None, :].to(grad_crop.dtype))
    return Aligned(act_crop, grad_crop, valid, centre, score, start, ties, flat)


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
