"""Examples, alignment, accumulators and the profiles built from them (DESIGN §1).

Pipeline for one chunk of examples of one utterance and one layer ``l``:

1. :func:`select_examples` picks the output frames (examples) and their predicted class.
2. The engine returns their sensitivities as a :class:`~gradnap.engine.base.Window`.
3. :func:`align` finds the centre ``t*`` of each example and crops the layer's activations
   and the sensitivities to ``W_l`` positions around it (an :class:`Aligned` batch).
4. :func:`chunk_stats` turns the batch into the quantities that are summed, and
   :class:`GroupingSums` adds them per group (sums and counts only, so accumulators of
   shards, checkpoints or processes merge by addition).

Conventions (normative for this package):

* **Search range of t\\*.** ``t*`` is searched over the positions of the output frame's
  cone (its receptive field in layer ``l``, when the model's geometry is known) that lie
  inside the utterance, else over all positions of the engine's window inside the
  utterance. So the cone engine (cone-wide windows) and the generic engine (whole-layer
  windows) give the same ``t*``.
* **Ties.** The first (smallest) position with the maximal score wins.
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

from .defaults import BLANK_INDEX
from .errors import GradnapError

__all__ = [
    "EXAMPLE_MODES",
    "select_examples",
    "Aligned",
    "Positions",
    "align",
    "recrop",
    "ChunkStats",
    "chunk_stats",
    "LayerSums",
    "GroupingSums",
    "mean_profile",
    "dataset_mean",
    "gradnap_profile",
    "navai_profile",
    "nap_profile",
    "neuron_std",
]

log = logging.getLogger(__name__)

#: Example selection modes (DESIGN §1.1).
EXAMPLE_MODES = ("nonblank", "all", "first")


def select_examples(
    probs: torch.Tensor, mode: str = "nonblank", blank: int = BLANK_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Examples of one utterance from its output ``probs`` ``(K, T')``.

    The greedy prediction of frame ``tau`` is ``argmax_k probs[k, tau]`` (first maximum).
    ``mode``:

    * ``"nonblank"``: every frame whose prediction is not ``blank``;
    * ``"all"``: every frame;
    * ``"first"``: the first frame of each run of equal non-blank predictions (a blank
      between two equal predictions starts a new run, as in CTC decoding).

    Returns ``(frames, classes)``, both ``(n,)`` int64, frames ascending.
    """
    if mode not in EXAMPLE_MODES:
        raise GradnapError(
            f"examples: unknown mode {mode!r}; choose from {', '.join(EXAMPLE_MODES)}"
        )
    pred = probs.argmax(dim=0)  # (T',)
    frames = torch.arange(pred.numel())
    if mode == "all":
        keep = torch.ones_like(pred, dtype=torch.bool)
    else:
        keep = pred != blank
        if mode == "first":
            prev = torch.cat([pred.new_full((1,), -1), pred[:-1]])
            keep &= pred != prev
    return frames[keep], pred[keep].to(torch.int64)


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
        self._at = torch.nn.functional.pad(self.act, (pad, pad)).T.contiguous()  # (T+2p, C)

    def windows(self, start: torch.Tensor, width: int) -> torch.Tensor:
        """Activations at positions ``start[i] + j`` (``j < width``): ``(n, C, width)``."""
        if start.numel():
            need = max(0, -int(start.min()), int(start.max()) + width - self.length)
            if need > self.pad:
                self._build(max(need, 2 * self.pad))
        return self._at.unfold(0, width, 1).index_select(0, start + self.pad)


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
    """Align ``n`` examples in one layer (DESIGN §1.3).

    ``act``: the layer's activations ``(C, T)`` (the spectrogram ``(F, T)`` for the
    input), or their :class:`Positions` (reused across the chunks of an utterance).
    ``grads``: ``(n, C, We)`` sensitivities at positions ``start[i] + j`` (the engine's
    window; zero outside the utterance). ``start``: ``(n,)`` int64. ``width``: ``W``.
    ``search``: inclusive ``(lo, hi)`` ``(n,)`` position ranges to search ``t*`` in (the
    cone), or ``None`` for the whole window.

    Score per position: ``sum_c |S[c, t]| * A[c, t]`` for a layer, ``sum_f |S[f, t]|``
    for the input; ``t*`` is the first position with the maximal score among the
    searched positions inside the utterance.
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
    centre = start + score.argmax(dim=1)  # first maximum
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
    return Aligned(act_crop, grad_crop, valid, centre)


@dataclass
class ChunkStats:
    """Per-example quantities that the accumulators sum (float32, one layer)."""

    act: torch.Tensor  # (n, C, W)
    grad: torch.Tensor  # (n, C, W)
    count: torch.Tensor  # (n, W) 1.0 where the position is data
    sq: torch.Tensor  # (n, C) sum over valid positions of act**2
    sorted: torch.Tensor | None  # (n, C, W) activations sorted per neuron, descending
    sorted_count: torch.Tensor | None  # (n, W) 1.0 for ranks < number of valid positions


def chunk_stats(aligned: Aligned, naps: bool = True) -> ChunkStats:
    """What one aligned batch adds to the sums.

    NAPs: each neuron's activations at the valid positions of the window, sorted in
    descending order (rank ``j`` = ``j``-th largest); ranks beyond the number of valid
    positions are not data (count 0).
    """
    act, grad, valid = aligned.act, aligned.grad, aligned.valid
    count = valid.to(act.dtype)
    sq = act.square().sum(dim=2)  # act is 0 at invalid positions
    sorted_act = sorted_count = None
    if naps:
        all_valid = bool(valid.all())
        neg = np.negative(act.numpy())  # sort ascending of -act = descending of act
        if not all_valid:
            np.copyto(neg, np.inf, where=~valid.numpy()[:, None, :])  # invalid sorts last
        neg.sort(axis=2)  # numpy's SIMD sort: much faster than torch.sort on short rows
        np.negative(neg, out=neg)
        nvalid = valid.sum(dim=1)  # (n,)
        sorted_count = (torch.arange(act.shape[2])[None, :] < nvalid[:, None]).to(act.dtype)
        if not all_valid:
            np.copyto(neg, 0.0, where=~sorted_count.numpy().astype(bool)[:, None, :])
        sorted_act = torch.from_numpy(neg)
    return ChunkStats(act, grad, count, sq, sorted_act, sorted_count)


_FIELDS = ("act_sum", "grad_sum", "count", "act_sqsum", "sorted_sum", "sorted_count")


@dataclass
class LayerSums:
    """Sums of one grouping in one layer, first axis = group.

    ``act_sum``, ``grad_sum``: ``(G, C, W)`` float64 sums of aligned activations and
    sensitivities; ``count``: ``(G, W)`` int64 examples with data at each position;
    ``act_sqsum``: ``(G, C)`` float64 sum of squared activations over valid positions;
    ``sorted_sum``: ``(G, C, W)`` float64 sums of per-neuron sorted activations (NAPs) and
    ``sorted_count``: ``(G, W)`` int64 examples with data at each rank (``None`` when
    NAPs are off).
    """

    act_sum: torch.Tensor
    grad_sum: torch.Tensor
    count: torch.Tensor
    act_sqsum: torch.Tensor
    sorted_sum: torch.Tensor | None = None
    sorted_count: torch.Tensor | None = None

    @classmethod
    def zeros(cls, groups: int, channels: int, width: int, naps: bool = True) -> LayerSums:
        f64, i64 = torch.float64, torch.int64
        return cls(
            torch.zeros(groups, channels, width, dtype=f64),
            torch.zeros(groups, channels, width, dtype=f64),
            torch.zeros(groups, width, dtype=i64),
            torch.zeros(groups, channels, dtype=f64),
            torch.zeros(groups, channels, width, dtype=f64) if naps else None,
            torch.zeros(groups, width, dtype=i64) if naps else None,
        )

    @property
    def naps(self) -> bool:
        return self.sorted_sum is not None

    def fields(self) -> dict[str, torch.Tensor]:
        """Non-empty fields by name."""
        return {f: getattr(self, f) for f in _FIELDS if getattr(self, f) is not None}

    def grow(self, groups: int) -> None:
        """Make room for ``groups`` groups (new groups are zero)."""
        have = self.act_sum.shape[0]
        if groups <= have:
            return
        new = max(groups, 2 * have, 8)
        for name, t in self.fields().items():
            z = torch.zeros((new,) + tuple(t.shape[1:]), dtype=t.dtype)
            z[:have] = t
            setattr(self, name, z)

    def add(
        self, rows: torch.Tensor | None, groups: torch.Tensor, stats: ChunkStats
    ) -> dict[str, torch.Tensor]:
        """Add examples ``rows`` (``(m,)`` indices into ``stats``, or ``None`` = all) to
        ``groups`` (``(m,)`` int64 group index of each added row).

        Sums are first formed in float32 over the chunk (at most a few hundred examples)
        per group present, then added to the float64 accumulators, so the order of
        additions is fixed by the chunking. Returns those per-chunk partial sums (one row
        per distinct group, ascending), keyed by field.
        """
        uniq, inv = torch.unique(groups, return_inverse=True)
        sources = {
            "act_sum": stats.act,
            "grad_sum": stats.grad,
            "count": stats.count,
            "act_sqsum": stats.sq,
            "sorted_sum": stats.sorted,
            "sorted_count": stats.sorted_count,
        }
        parts = {}
        for name in self.fields():
            src = sources[name]
            if src is None:
                raise GradnapError("accumulator: NAP sums are kept but the chunk has none")
            if rows is not None:
                src = src[rows]
            if uniq.numel() == 1:
                parts[name] = src.sum(dim=0, keepdim=True)
            else:
                part = torch.zeros((uniq.numel(),) + tuple(src.shape[1:]), dtype=src.dtype)
                parts[name] = part.index_add_(0, inv, src)
        self.add_parts(uniq, parts)
        return parts

    def add_parts(self, groups: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        """Add per-group partial sums ``parts[field]`` ``(m, ...)`` to groups ``groups`` ``(m,)``."""
        for name, acc in self.fields().items():
            part = parts[name]
            if acc.dtype == torch.int64:
                part = part.round()
            acc.index_add_(0, groups, part.to(acc.dtype))


class GroupingSums:
    """Accumulators of one grouping: labels in order of first appearance, example counts
    per group, examples without a label, and :class:`LayerSums` per layer."""

    def __init__(
        self,
        name: str,
        layer_shapes: dict[str, tuple[int, int]],
        naps: bool = True,
        size_hint: int = 0,
    ):
        """``size_hint``: expected number of groups (room is made for them up front; more
        groups grow the accumulators)."""
        self.name = name
        self.labels: list[str] = []
        self.index: dict[str, int] = {}
        self.examples = torch.zeros(0, dtype=torch.int64)
        self.unlabelled = 0
        self.naps = naps
        self.layers = {
            layer: LayerSums.zeros(size_hint, c, w, naps) for layer, (c, w) in layer_shapes.items()
        }

    def group_ids(self, labels: list[str | None]) -> torch.Tensor:
        """Group index per example (``-1`` for ``None``), adding new labels; ``(n,)``."""
        out = []
        for label in labels:
            if label is None:
                out.append(-1)
                continue
            i = self.index.get(label)
            if i is None:
                i = self.index[label] = len(self.labels)
                self.labels.append(label)
            out.append(i)
        g = len(self.labels)
        if self.examples.numel() < g:
            self.examples = torch.cat(
                [self.examples, torch.zeros(g - self.examples.numel(), dtype=torch.int64)]
            )
        for sums in self.layers.values():
            sums.grow(g)
        return torch.tensor(out, dtype=torch.int64)

    def add(
        self, gid: torch.Tensor, stats: dict[str, ChunkStats]
    ) -> dict[str, dict[str, torch.Tensor]] | None:
        """Add one chunk: ``gid`` ``(n,)`` from :meth:`group_ids`, ``stats`` per layer.

        When every example has a label, returns the per-group partial sums of the chunk
        (layer -> field -> ``(m, ...)``); their sum over groups is the chunk's total,
        which :meth:`add_total` adds to a one-group grouping without another pass.
        """
        labelled = gid >= 0
        self.unlabelled += int((~labelled).sum())
        if not bool(labelled.any()):
            return None
        rows = None if bool(labelled.all()) else labelled.nonzero().flatten()
        groups = gid if rows is None else gid[rows]
        self.examples.index_add_(0, groups, torch.ones_like(groups))
        parts = {layer: sums.add(rows, groups, stats[layer]) for layer, sums in self.layers.items()}
        return parts if rows is None else None

    def add_total(self, n: int, group: int, parts: dict[str, dict[str, torch.Tensor]]) -> None:
        """Add ``n`` examples to group ``group`` from another grouping's partial sums."""
        self.examples[group] += n
        g = torch.tensor([group])
        for layer, sums in self.layers.items():
            # in float64: the rows' order (group numbering) differs between runs and shards
            total = {
                k: v.to(torch.float64).sum(dim=0, keepdim=True) for k, v in parts[layer].items()
            }
            sums.add_parts(g, total)

    # --- arrays (the result file) -------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Trimmed numpy arrays keyed ``labels``, ``examples``, ``<layer>/<field>``."""
        g = len(self.labels)
        out: dict[str, np.ndarray] = {
            "labels": np.array(self.labels, dtype=np.str_).reshape(g),
            "examples": self.examples[:g].numpy().copy(),
        }
        for layer, sums in self.layers.items():
            for field, t in sums.fields().items():
                out[f"{layer}/{field}"] = t[:g].numpy().copy()
        return out

    @classmethod
    def from_arrays(cls, name: str, arrays: dict[str, np.ndarray], unlabelled: int = 0):
        """Inverse of :meth:`to_arrays`."""
        layers: dict[str, dict[str, np.ndarray]] = {}
        for key, value in arrays.items():
            if "/" in key:
                layer, field = key.rsplit("/", 1)
                layers.setdefault(layer, {})[field] = value
        shapes = {layer: tuple(f["act_sum"].shape[1:]) for layer, f in layers.items()}
        naps = all("sorted_sum" in f for f in layers.values()) and bool(layers)
        self = cls(name, shapes, naps)
        self.labels = [str(s) for s in arrays["labels"].tolist()]
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.examples = torch.from_numpy(np.asarray(arrays["examples"], dtype=np.int64).copy())
        self.unlabelled = int(unlabelled)
        for layer, f in layers.items():
            kw = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in f.items() if k in _FIELDS}
            self.layers[layer] = LayerSums(**kw)
        return self

    def merge(self, other: GroupingSums) -> None:
        """Add ``other`` (same layers and window widths) into this one, by label."""
        if set(other.layers) != set(self.layers):
            raise GradnapError(f"grouping {self.name!r}: the results hold different layers")
        ids = self.group_ids(list(other.labels))
        self.unlabelled += other.unlabelled
        self.examples.index_add_(0, ids, other.examples[: len(other.labels)])
        for layer, sums in self.layers.items():
            theirs = other.layers[layer].fields()
            mine = sums.fields()
            if set(theirs) != set(mine):
                raise GradnapError(f"grouping {self.name!r}: one result has NAP sums, one not")
            for field, t in mine.items():
                o = theirs[field][: len(other.labels)]
                if tuple(o.shape[1:]) != tuple(t.shape[1:]):
                    raise GradnapError(
                        f"layer {layer!r}: {field} shapes differ ({tuple(o.shape[1:])} vs "
                        f"{tuple(t.shape[1:])}): different models or window widths"
                    )
                t.index_add_(0, ids, o.to(t.dtype))

    def reorder(self, labels: list[str]) -> None:
        """Re-index to exactly ``labels`` (a superset of the current ones, any order)."""
        missing = set(self.labels) - set(labels)
        if missing:
            raise GradnapError(f"grouping {self.name!r}: reorder drops {sorted(missing)}")
        other = GroupingSums(self.name, {}, self.naps)
        other.labels, other.index = self.labels, self.index
        other.examples, other.layers, other.unlabelled = self.examples, self.layers, self.unlabelled
        self.labels, self.index = [], {}
        self.examples = torch.zeros(0, dtype=torch.int64)
        self.unlabelled = 0
        self.layers = {
            layer: LayerSums.zeros(0, s.act_sum.shape[1], s.act_sum.shape[2], self.naps)
            for layer, s in other.layers.items()
        }
        self.group_ids(list(labels))
        self.merge(other)


# --- profiles from sums (numpy) ------------------------------------------------------------


def _per_position_mean(
    total: np.ndarray, count: np.ndarray, fill: np.ndarray | float
) -> np.ndarray:
    """``total`` ``(..., C, W)`` / ``count`` ``(..., W)``; ``fill`` where the count is 0."""
    cnt = count[..., None, :].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / cnt
    return np.where(cnt > 0, mean, fill)


def mean_profile(act_sum: np.ndarray, count: np.ndarray, fill=0.0) -> np.ndarray:
    """Per-position mean ``(C, W)`` of one group's sums (``fill`` where no data)."""
    return _per_position_mean(act_sum, count, fill)


def dataset_mean(act_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``M_l`` ``(C, W)``: mean over all examples of all groups, from per-group sums
    ``(G, C, W)`` and counts ``(G, W)`` (0 where no example has data)."""
    return _per_position_mean(act_sum.sum(axis=0), count.sum(axis=0), 0.0)


def gradnap_profile(
    act_sum: np.ndarray, grad_sum: np.ndarray, count: np.ndarray, mean: np.ndarray
) -> np.ndarray:
    """``GradNAP = (Ā - M) ⊙ |Ḡ| / max|Ḡ|`` ``(C, W)`` of one group (DESIGN §1.4).

    ``act_sum``, ``grad_sum``: ``(C, W)``; ``count``: ``(W,)``; ``mean``: ``M`` ``(C, W)``.
    Where the group has no data, ``Ā = M`` and ``Ḡ = 0``; an all-zero ``Ḡ`` gives an
    all-zero profile (no division by zero).
    """
    a = _per_position_mean(act_sum, count, mean)
    g = np.abs(_per_position_mean(grad_sum, count, 0.0))
    peak = g.max() if g.size else 0.0
    mask = g / peak if peak > 0 else np.zeros_like(g)
    return (a - mean) * mask


def navai_profile(act_sum: np.ndarray, count: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """NAvAI ``(F, W)``: the group's mean aligned input window minus the dataset mean
    (input aligned at ``argmax_t sum_f |S_0[f, t]|``; no gradient mask)."""
    return _per_position_mean(act_sum, count, mean) - mean


def neuron_std(act_sum: np.ndarray, act_sqsum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-neuron standard deviation ``(C,)`` of the activations at all valid positions of
    all aligned windows, from summed ``act_sum`` ``(C, W)``, ``act_sqsum`` ``(C,)`` and
    ``count`` ``(W,)``."""
    n = float(count.sum())
    if n <= 0:
        return np.zeros(act_sum.shape[0])
    mu = act_sum.sum(axis=1) / n
    return np.sqrt(np.maximum(act_sqsum / n - mu * mu, 0.0))


def nap_profile(
    sorted_sum: np.ndarray,
    sorted_count: np.ndarray,
    sorted_mean: np.ndarray,
    std: np.ndarray,
) -> np.ndarray:
    """NAP ``(C, W)`` of one group: mean sorted activations minus the dataset mean of the
    sorted activations, divided per neuron by the neuron's standard deviation ``std``
    ``(C,)`` (neurons with ``std == 0`` give 0)."""
    a = _per_position_mean(sorted_sum, sorted_count, sorted_mean)
    scale = np.where(std > 0, std, np.inf)[:, None]
    return (a - sorted_mean) / scale
