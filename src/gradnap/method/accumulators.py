"""Accumulators: per-group sums and counts of aligned windows, and their one array codec.

For one chunk of examples, :func:`chunk_stats` turns the aligned windows of a layer
(:mod:`gradnap.method.windows`) into the per-example quantities that are summed;
:class:`GroupingSums` adds them per group of one grouping and :class:`Accumulators` holds
the sums of every grouping. Only sums and counts are kept, so the accumulators of shards,
checkpoints and processes merge by addition (docs/method.md §5).

One representation: the sums are numpy arrays from the first example to the result file
(the additions work on zero-copy torch views of them). :meth:`Accumulators.to_arrays`
and :meth:`Accumulators.from_arrays` are the only place that knows the array names of a
result file (``sums/<grouping>/labels``, ``sums/<grouping>/examples``,
``sums/<grouping>/<layer>/<field>``; see ``docs/results.md``).

Folds (docs/method.md §6): every example belongs to one of ``K`` folds, by a hash of its
utterance id (:func:`fold_of`). With ``K >= 2`` each layer also keeps per-fold sums of
activations, sensitivities and counts of the window's central columns at full
resolution, the other columns pooled into time bins or not kept (:class:`FoldLayout`).
They feed the cross-validated statistics only; every profile and figure uses the
full-resolution totals. A complete result file stores them as float16 means
(:func:`encode_fold_arrays`).
A grouping may keep the per-fold sums alone (``totals=False``: random-label groupings,
which exist to check the statistics' zero).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from gradnap.defaults import METHOD
from gradnap.errors import GradnapError
from gradnap.method.windows import Aligned

__all__ = [
    "Accumulators",
    "ChunkRows",
    "ChunkStats",
    "FOLDED",
    "FOLD_KEYS",
    "GroupingSums",
    "LayerSums",
    "chunk_parts",
    "chunk_rows",
    "chunk_stats",
    "FoldLayout",
    "decode_fold_arrays",
    "encode_fold_arrays",
    "fold_bins",
    "fold_of",
    "sort_windows",
    "upgrade_arrays",
]

log = logging.getLogger(__name__)

#: Prefix of every accumulator array in a result file.
PREFIX = "sums"


@dataclass
class ChunkStats:
    """Per-example quantities that the accumulators sum (one layer)."""

    act: torch.Tensor  # (n, C, W)
    grad: torch.Tensor  # (n, C, W)
    count: torch.Tensor  # (n, W) 1.0 where the position is data
    sq: torch.Tensor  # (n, C) sum over valid positions of act**2 (float64 from align)
    #: ``(n, C, W)`` activations sorted per neuron, *ascending*: column ``W - 1 - j`` holds
    #: rank ``j`` (the ``j``-th largest); see :attr:`sorted`.
    ascending: torch.Tensor | None
    sorted_count: torch.Tensor | None  # (n, W) 1.0 for ranks < number of valid positions

    @property
    def sorted(self) -> torch.Tensor | None:
        """``(n, C, W)`` activations sorted per neuron, descending (rank ``j`` in column
        ``j``; a copy of :attr:`ascending` reversed)."""
        if self.ascending is None:
            return None
        return torch.from_numpy(np.ascontiguousarray(self.ascending.numpy()[..., ::-1]))


def chunk_stats(aligned: Aligned, naps: bool = True) -> ChunkStats:
    """What one aligned batch adds to the sums (NAPs: :func:`sort_windows` of a copy of
    the activations)."""
    act, grad, valid = aligned.act, aligned.grad, aligned.valid
    count = valid.to(act.dtype)
    ascending = sorted_count = None
    if naps:
        ascending, sorted_count = sort_windows(aligned, act.numpy().copy())
    return ChunkStats(act, grad, count, aligned.sq, ascending, sorted_count)


def sort_windows(aligned: Aligned, work: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The NAPs of a chunk: each neuron's activations at the valid positions of the window
    sorted in descending order (rank ``j`` = ``j``-th largest); ranks beyond the number of
    valid positions are not data (count 0).

    ``work``: ``(n, C, W)`` the activations ``aligned.act`` (a copy, or that array itself
    when it is not needed any more), sorted in place *ascending*: column ``W - 1 - j``
    holds rank ``j`` (the sums reverse the columns of their ``(m, C, W)`` partial sums
    instead of every example's ``(C, W)``: one pass over the chunk less). Returns it
    (:attr:`ChunkStats.ascending`) and the ``(n, W)`` counts per rank.
    """
    valid = aligned.valid
    width = work.shape[2]
    nvalid = valid.sum(dim=1)  # (n,)
    sorted_count = (torch.arange(width)[None, :] < nvalid[:, None]).to(aligned.act.dtype)
    # Windows that reach past the utterance's ends (a run of invalid columns at one end,
    # zero in ``act``): their invalid columns must sort first (lowest rank). When none of
    # those windows holds a negative value they do (zeros sort above every valid value
    # but equal zeros), else they are set to -inf for the sort and to 0 afterwards.
    edge = (nvalid < width).nonzero().flatten().tolist()
    fix = bool(edge) and not aligned.nonnegative
    if fix:
        first = valid.to(torch.int8).argmax(dim=1).tolist()  # first valid column
        for i in edge:
            lo, hi = first[i], first[i] + int(nvalid[i])
            work[i, :, :lo] = -np.inf
            work[i, :, hi:] = -np.inf
    work.sort(axis=2)  # numpy's SIMD sort: much faster than torch.sort on short rows
    if fix:
        for i in edge:
            work[i, :, : width - int(nvalid[i])] = 0.0
    return torch.from_numpy(work), sorted_count


#: Full-resolution totals (``act_sum``, ``grad_sum`` ``(G, C, W)``, ``count`` ``(G, W)``,
#: ``act_sqsum`` ``(G, C)``) and NAP sums.
TOTAL_FIELDS = ("act_sum", "grad_sum", "count", "act_sqsum")
NAP_FIELDS = ("sorted_sum", "sorted_count")
#: Per-fold, time-binned sums (``fold_act``, ``fold_grad`` ``(G, K, C, B)``,
#: ``fold_count`` ``(G, K, B)``, fold axis 1), each with the total it bins.
FOLD_SOURCE = {"fold_act": "act_sum", "fold_grad": "grad_sum", "fold_count": "count"}
FOLDED = tuple(FOLD_SOURCE)
_FIELDS = TOTAL_FIELDS + NAP_FIELDS + FOLDED
_INT_FIELDS = ("count", "sorted_count", "fold_count")
#: What the fold hash of an example is taken of (docs/method.md §6).
FOLD_KEYS = ("utterance", "speaker")


def fold_of(key: str, folds: int) -> int:
    """The fold ``0 .. folds-1`` of an utterance (or speaker) id ``key``.

    The first 8 bytes of the SHA-256 of the UTF-8 id, modulo ``folds``: the same in every
    process, shard, worker and resumed run (unlike Python's salted ``hash``).
    """
    if folds < 1:
        raise GradnapError(f"folds {folds}: must be >= 1")
    digest = hashlib.sha256(str(key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % folds


def fold_bins(width: int, bins: int = 6) -> np.ndarray:
    """Equal time bins: the bin of each of ``width`` window columns, ``(W,)`` int64, bins
    ``0 .. B-1`` (the whole layout of format-3 files; outside the full-resolution span of
    :class:`FoldLayout` today).

    Bins are ``b = ceil(W / bins)`` columns wide and centred on the alignment column
    ``W // 2`` (its bin covers offsets ``-(b//2) .. b - 1 - b//2``); the outermost bins
    are cut at the window's edges, so there are at most ``bins + 1`` bins.

    >>> fold_bins(10, 4).tolist()
    [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    >>> fold_bins(1).tolist()
    [0]
    """
    if width < 1 or bins < 1:
        raise GradnapError(f"fold bins: width {width} and bins {bins} must be >= 1")
    b = -(-width // bins)
    offsets = np.arange(width) - width // 2
    idx = (offsets + b // 2) // b
    return (idx - idx.min()).astype(np.int64)


@dataclass(frozen=True)
class FoldLayout:
    """Which window columns the per-fold sums keep, and how (docs/method.md §6).

    ``span``: the fraction of the ``W`` window columns kept at full resolution, centred
    on the alignment column: ``n = round(span * W)`` columns (at least 1 when
    ``span > 0``), offsets ``-(n//2) .. n - 1 - n//2``. ``bins``: the columns outside
    that span are pooled into the equal bins of :func:`fold_bins` ``(W, bins)``, cut at
    the span (a bin never mixes columns of both sides); ``bins = 0`` keeps none of them.
    ``FoldLayout(bins=6, span=0)`` is the layout of format-3 files, ``span=1`` full
    resolution.
    """

    bins: int = METHOD.fold_bins
    span: float = METHOD.fold_span

    def __post_init__(self) -> None:
        if self.bins < 0 or not 0.0 <= self.span <= 1.0:
            raise GradnapError(
                f"per-fold layout: bins {self.bins} must be >= 0 and span {self.span} in [0, 1]"
            )
        if self.bins == 0 and self.span == 0:
            raise GradnapError("per-fold layout: bins 0 and span 0 keep no column")

    def columns(self, width: int) -> np.ndarray:
        """The bin of each of ``width`` window columns, ``(W,)`` int64, bins ``0 .. B-1``
        in column order, ``-1`` for a column not kept.

        >>> FoldLayout(bins=1, span=0.4).columns(10).tolist()
        [0, 0, 0, 1, 2, 3, 4, 5, 5, 5]
        >>> FoldLayout(bins=0, span=0.25).columns(8).tolist()
        [-1, -1, -1, 0, 1, -1, -1, -1]
        """
        if width < 1:
            raise GradnapError(f"per-fold layout: width {width} must be >= 1")
        n = min(width, max(1, round(self.span * width))) if self.span > 0 else 0
        lo = width // 2 - n // 2
        col = np.arange(width)
        fine = (col >= lo) & (col < lo + n)
        coarse = fold_bins(width, self.bins) if self.bins else np.full(width, -1)
        # keys in column order: a fine column is its own bin; a coarse bin is split at
        # the span (side 0 left of it, 2 right of it)
        side = np.where(col < lo, 0, np.where(fine, 1, 2)) if n else np.zeros(width, int)
        key = np.where(fine, col, coarse)
        out = np.full(width, -1, dtype=np.int64)
        keep = fine | (coarse >= 0)
        pairs = list(zip(side[keep].tolist(), key[keep].tolist(), strict=True))
        order = {p: i for i, p in enumerate(dict.fromkeys(pairs))}
        out[keep] = [order[p] for p in pairs]
        return out

    def size(self, width: int) -> int:
        """``B``: the number of bins of a window of ``width`` columns."""
        return int(self.columns(width).max()) + 1


#: The layout of format-3 result files (before ``fold_span``).
FORMAT3_LAYOUT = FoldLayout(bins=6, span=0.0)


def pool_columns(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sum the last axis of ``a`` ``(..., W)`` into bins ``index`` ``(W,)``: ``(..., B)``;
    columns of bin ``-1`` are left out."""
    keep = index >= 0
    out = np.zeros((int(index.max()) + 1,) + a.shape[:-1], dtype=a.dtype)
    np.add.at(out, index[keep], np.moveaxis(a[..., keep], -1, 0))
    return np.moveaxis(out, 0, -1)


#: Float16 per-fold means: each channel's scale maps its largest ``|mean|`` to at most
#: ``2**15`` (float16 holds up to 65504), by a power of two (at least ``2**-120``, exact in
#: float32).
_F16_TOP = 15
_SCALED = ("/fold_act_scale", "/fold_grad_scale")


def encode_fold_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-fold sums of a complete result file as float16 *means* (docs/results.md,
    "Size"): ``fold_act`` and ``fold_grad`` ``(G, K, C, B)`` divided by ``fold_count``
    (0 where the count is 0) and by a power of two per channel, ``<field>_scale``
    ``(C,)`` beside them, chosen so that the channel's largest mean sits just below
    float16's top: every mean keeps float16's relative precision ``2**-11`` down to
    ``2**-24`` of its channel's largest (sensitivities of 1e-5 would otherwise fall
    below float16's normal range). The other arrays are returned unchanged."""
    out = dict(arrays)
    for key, value in arrays.items():
        head, _, field = key.rpartition("/")
        if field not in ("fold_act", "fold_grad") or not key.startswith(PREFIX + "/"):
            continue
        count = arrays[f"{head}/fold_count"][..., None, :].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, value / np.where(count > 0, count, 1.0), 0.0)
        top = np.abs(mean).max(axis=(0, 1, 3)) if mean.size else np.zeros(value.shape[2])
        with np.errstate(divide="ignore"):
            e = np.where(top > 0, np.ceil(np.log2(np.where(top > 0, top, 1.0))) - _F16_TOP, 0)
        e = np.maximum(e, -120).astype(np.int64)
        out[key] = np.ldexp(mean, -e[:, None]).astype(np.float16)
        out[f"{key}_scale"] = np.ldexp(1.0, e)
    return out


def decode_fold_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_fold_arrays` (float64 sums; the ``_scale`` entries
    removed); arrays of sums (float32, float64) pass unchanged."""
    out = {k: v for k, v in arrays.items() if not k.endswith(_SCALED)}
    for key, value in arrays.items():
        if value.dtype != np.float16 or not key.startswith(PREFIX + "/"):
            continue
        head = key.rpartition("/")[0]
        scale = np.asarray(arrays[f"{key}_scale"], dtype=np.float64)[:, None]
        count = arrays[f"{head}/fold_count"][..., None, :].astype(np.float64)
        out[key] = value.astype(np.float64) * scale * count
    return out


def upgrade_arrays(
    arrays: Mapping[str, np.ndarray], version: int, layout: FoldLayout = FORMAT3_LAYOUT
) -> dict[str, np.ndarray]:
    """The arrays of a result file of format ``version`` in today's layout (version 4),
    float sums as float64.

    Version 4 stores the per-fold sums as float16 means (:func:`decode_fold_arrays`).
    Versions 1 and 3 kept totals and (3) per-fold sums as float sums, in the layout their
    metadata names (:data:`FORMAT3_LAYOUT`). Version 2 kept
    full-resolution per-fold sums (a fold axis 1 on ``act_sum``, ``grad_sum``,
    ``count``, ``act_sqsum``): their sums over the folds are the totals, and with more
    than one fold they are pooled into today's per-fold sums by ``layout`` (the run's).
    """
    out = {
        k: np.asarray(v, dtype=np.float64) if v.dtype == np.float32 else v
        for k, v in decode_fold_arrays(arrays).items()
    }
    if version != 2:
        return out
    for key, value in arrays.items():
        if not key.startswith(PREFIX + "/"):
            continue
        head, field = key.rsplit("/", 1)
        if field not in TOTAL_FIELDS:
            continue
        out[key] = value.sum(axis=1)
        if value.shape[1] > 1 and field != "act_sqsum":
            name = {v: k for k, v in FOLD_SOURCE.items()}[field]
            out[f"{head}/{name}"] = pool_columns(value, layout.columns(value.shape[-1]))
    return out


def _view(a: np.ndarray) -> torch.Tensor:
    """A torch view of ``a`` (no copy): the additions write into the numpy arrays."""
    return torch.from_numpy(a)


@dataclass(frozen=True)
class ChunkRows:
    """The examples of a chunk that one grouping labels."""

    #: ``(m,)`` int64 the distinct groups of the labelled examples, ascending.
    groups: torch.Tensor
    #: ``(n, m)`` float32 membership: 1.0 where example ``i`` belongs to ``groups[k]``
    #: (a row of zeros for an unlabelled example).
    member: torch.Tensor
    #: The fold of the chunk's utterance.
    fold: int = 0


def chunk_rows(gid: torch.Tensor, fold: int = 0) -> ChunkRows | None:
    """The membership of ``gid`` ``(n,)`` (group index per example, ``-1`` = none);
    ``None`` when no example has a group."""
    labelled = gid >= 0
    if not bool(labelled.any()):
        return None
    groups, inv = torch.unique(gid[labelled], return_inverse=True)
    member = torch.zeros(gid.shape[0], groups.shape[0])
    member[labelled.nonzero().flatten(), inv] = 1.0
    return ChunkRows(groups, member, fold)


def chunk_parts(
    stats: ChunkStats, member: torch.Tensor, naps: bool, fields: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Per-group partial sums of one layer's chunk: field -> ``(m, ...)``.

    ``member``: ``(n, m)`` membership of the groups of one or more groupings side by side
    (:attr:`ChunkRows.member`). Each field is one matrix product ``member.T @ values``
    (``(m, n) x (n, C * W)``): the sums of every group of every grouping in one pass over
    the chunk's values, an exact 0/1 weighting whose float32 additions run in an order
    fixed by the shapes. ``fields``: which (default: the totals, and the NAP sums with
    ``naps``).
    """
    sources = {
        "act_sum": stats.act,
        "grad_sum": stats.grad,
        "count": stats.count,
        "act_sqsum": stats.sq,
        "sorted_sum": stats.ascending,
        "sorted_count": stats.sorted_count,
    }
    n = member.shape[0]
    mt = member.T if member.T.is_contiguous() else member.T.contiguous()
    out = {}
    for name in fields or TOTAL_FIELDS + (NAP_FIELDS if naps else ()):
        src = sources[name]
        if src is None:
            raise GradnapError("accumulator: NAP sums are kept but the chunk has none")
        m = mt if src.dtype == mt.dtype else mt.to(src.dtype)
        part = torch.mm(m, src.reshape(n, -1)).view(-1, *src.shape[1:])
        if name == "sorted_sum":  # ascending ranks: reverse the partial sums' columns
            part = part.flip(-1)
        out[name] = part
    return out


@dataclass(frozen=True)
class SumsSpec:
    """What the sums of a grouping keep (docs/method.md §1.4, §6)."""

    #: Sorted-activation sums for NAPs (with the totals only).
    naps: bool = True
    #: ``K``: per-fold sums when ``>= 2``.
    folds: int = 1
    #: Full-resolution totals; ``False`` keeps per-fold sums only (needs ``folds >= 2``).
    totals: bool = True
    #: Which window columns the per-fold sums keep (:class:`FoldLayout`).
    layout: FoldLayout = dataclasses.field(default_factory=FoldLayout)

    def __post_init__(self) -> None:
        if self.folds < 1:
            raise GradnapError(f"folds {self.folds}: must be >= 1")
        if not self.totals and self.folds < 2:
            raise GradnapError("sums: keeping per-fold sums alone needs folds >= 2")


@dataclass
class LayerSums:
    """Sums of one grouping in one layer, first axis = group (numpy arrays).

    Totals (``None`` for a grouping that keeps per-fold sums only): ``act_sum``,
    ``grad_sum`` ``(G, C, W)`` float64 sums of aligned activations and sensitivities;
    ``count`` ``(G, W)`` int64 examples with data at each position; ``act_sqsum``
    ``(G, C)`` float64 sum of squared activations over valid positions.
    NAPs (``None`` when off): ``sorted_sum`` ``(G, C, W)`` float64 sums of per-neuron
    sorted activations and ``sorted_count`` ``(G, W)`` int64 examples with data at each rank.
    Per fold (``None`` without folds): ``fold_act``, ``fold_grad`` ``(G, K, C, B)`` and
    ``fold_count`` ``(G, K, B)``: the same sums per fold, columns pooled into the bins
    ``bins`` ``(W,)`` (:meth:`FoldLayout.columns`; ``-1``: not kept). ``G`` may exceed
    the number of labels (room made up front).
    """

    channels: int
    width: int
    act_sum: np.ndarray | None = None
    grad_sum: np.ndarray | None = None
    count: np.ndarray | None = None
    act_sqsum: np.ndarray | None = None
    sorted_sum: np.ndarray | None = None
    sorted_count: np.ndarray | None = None
    fold_act: np.ndarray | None = None
    fold_grad: np.ndarray | None = None
    fold_count: np.ndarray | None = None
    bins: np.ndarray | None = None
    #: ``(W, B)`` float64 pooling matrix of :attr:`bins` (made on first use).
    _pool: torch.Tensor | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def zeros(
        cls, groups: int, channels: int, width: int, spec: SumsSpec | None = None
    ) -> LayerSums:
        """Empty sums of ``groups`` groups, ``(C, W) = (channels, width)``, keeping what
        ``spec`` says."""
        spec = spec or SumsSpec()
        f64, i64, g, c, w = np.float64, np.int64, groups, channels, width
        out = cls(channels, width)
        if spec.totals:
            out.act_sum = np.zeros((g, c, w), dtype=f64)
            out.grad_sum = np.zeros((g, c, w), dtype=f64)
            out.count = np.zeros((g, w), dtype=i64)
            out.act_sqsum = np.zeros((g, c), dtype=f64)
            if spec.naps:
                out.sorted_sum = np.zeros((g, c, w), dtype=f64)
                out.sorted_count = np.zeros((g, w), dtype=i64)
        if spec.folds >= 2:
            out.bins = spec.layout.columns(w)
            nb = int(out.bins.max()) + 1
            out.fold_act = np.zeros((g, spec.folds, c, nb), dtype=f64)
            out.fold_grad = np.zeros((g, spec.folds, c, nb), dtype=f64)
            out.fold_count = np.zeros((g, spec.folds, nb), dtype=i64)
        return out

    @property
    def naps(self) -> bool:
        return self.sorted_sum is not None

    @property
    def shape(self) -> tuple[int, int]:
        """``(C, W)``."""
        return self.channels, self.width

    @property
    def folds(self) -> int:
        """``K`` (1 without per-fold sums)."""
        return 1 if self.fold_act is None else self.fold_act.shape[1]

    def fields(self) -> dict[str, np.ndarray]:
        """Non-empty fields by name."""
        return {f: getattr(self, f) for f in _FIELDS if getattr(self, f) is not None}

    def grow(self, groups: int) -> None:
        """Make room for ``groups`` groups (new groups are zero)."""
        have = next(iter(self.fields().values())).shape[0]
        if groups <= have:
            return
        new = max(groups, 2 * have, 8)
        for name, a in self.fields().items():
            z = np.zeros((new,) + a.shape[1:], dtype=a.dtype)
            z[:have] = a
            setattr(self, name, z)

    def add(self, chunk: ChunkRows, stats: ChunkStats) -> None:
        """Add one chunk's examples (``stats``) to their groups (``chunk``).

        Sums are first formed in float32 over the chunk (at most a few hundred examples)
        per group present (:func:`chunk_parts`), then added to the float64 accumulators,
        so the order of additions is fixed by the chunking.
        """
        self.add_parts(chunk.groups, chunk_parts(stats, chunk.member, self.naps), chunk.fold)

    def add_parts(
        self, groups: torch.Tensor, parts: Mapping[str, torch.Tensor], fold: int = 0
    ) -> None:
        """Add per-group partial sums ``parts[field]`` ``(m, ...)`` of the total fields to
        groups ``groups`` ``(m,)`` of fold ``fold`` (totals and, binned, per-fold sums)."""
        k = self.folds
        if not 0 <= fold < k:
            raise GradnapError(f"fold {fold} outside 0..{k - 1}")
        wide: dict[str, torch.Tensor] = {}  # float64 copies of the parts, made once

        def f64(name: str) -> torch.Tensor:
            if name not in wide:
                wide[name] = _rounded(name, parts[name]).to(torch.float64)
            return wide[name]

        for name in TOTAL_FIELDS + NAP_FIELDS:
            acc = getattr(self, name)
            if acc is not None:
                target = _view(acc)
                target.index_add_(0, groups, f64(name).to(target.dtype))
        if self.bins is None:
            return
        rows = groups * k + fold  # fold-major rows of a (G*K, ...) view: one index_add
        pool = self._pooling()
        for name, source in FOLD_SOURCE.items():
            acc = getattr(self, name)
            pooled = f64(source) @ pool  # (m, ..., W) -> (m, ..., B)
            target = _view(acc.reshape((-1,) + acc.shape[2:]))
            target.index_add_(0, rows, _rounded(name, pooled).to(target.dtype))

    def _pooling(self) -> torch.Tensor:
        """``(W, B)`` float64, 1 where column ``w`` lies in bin ``b`` (:attr:`bins`; a
        row of zeros for a column not kept): the per-fold sums pool the columns as one
        matrix product."""
        assert self.bins is not None
        if self._pool is None or self._pool.shape[0] != self.bins.shape[0]:
            index = torch.from_numpy(self.bins)
            pool = torch.zeros(index.shape[0], int(index.max()) + 1, dtype=torch.float64)
            kept = (index >= 0).nonzero().flatten()
            pool[kept, index[kept]] = 1.0
            self._pool = pool
        return self._pool


def _rounded(name: str, part: torch.Tensor) -> torch.Tensor:
    """Counts summed in float are whole numbers: round before the integer cast."""
    return part.round() if name in _INT_FIELDS else part


class GroupingSums:
    """Accumulators of one grouping: labels in order of first appearance, example counts
    per group, examples without a label, and :class:`LayerSums` per layer."""

    def __init__(
        self,
        name: str,
        layer_shapes: Mapping[str, tuple[int, int]],
        spec: SumsSpec | None = None,
        size_hint: int = 0,
    ):
        """``layer_shapes``: layer -> ``(C, W)``; ``spec``: what to keep; ``size_hint``:
        expected number of groups (room is made for them up front; more groups grow the
        accumulators)."""
        self.name = name
        self.spec = spec or SumsSpec()
        self.labels: list[str] = []
        self.index: dict[str, int] = {}
        self.examples = np.zeros(max(size_hint, 0), dtype=np.int64)
        self.unlabelled = 0
        self.layers = {
            layer: LayerSums.zeros(size_hint, c, w, self.spec)
            for layer, (c, w) in layer_shapes.items()
        }

    def group_ids(self, labels: Iterable[str | None]) -> torch.Tensor:
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
        self._grow(len(self.labels))
        return torch.tensor(out, dtype=torch.int64)

    def _grow(self, g: int) -> None:
        if self.examples.shape[0] < g:
            z = np.zeros(max(g, 2 * self.examples.shape[0], 8), dtype=np.int64)
            z[: self.examples.shape[0]] = self.examples
            self.examples = z
        for sums in self.layers.values():
            sums.grow(g)

    def begin_chunk(self, gid: torch.Tensor, fold: int = 0) -> ChunkRows | None:
        """Count one chunk's examples (all of fold ``fold``): ``gid`` ``(n,)`` from
        :meth:`group_ids`. Returns their membership (:func:`chunk_rows`; the sums of each
        layer: :meth:`add_layer` or :meth:`add_parts`), ``None`` when none has a label."""
        labelled = gid >= 0
        self.unlabelled += int((~labelled).sum())
        chunk = chunk_rows(gid, fold)
        if chunk is not None:
            groups = gid[labelled]
            _view(self.examples).index_add_(0, groups, torch.ones_like(groups))
        return chunk

    def add_layer(self, layer: str, chunk: ChunkRows, stats: ChunkStats) -> None:
        """Add one layer's ``stats`` of a chunk. Layers are independent: different layers
        may be added from different threads."""
        self.layers[layer].add(chunk, stats)

    def add_parts(self, layer: str, chunk: ChunkRows, parts: Mapping[str, torch.Tensor]) -> None:
        """Add one layer's per-group partial sums of a chunk (:func:`chunk_parts` of
        ``chunk.member``, field -> ``(m, ...)``)."""
        self.layers[layer].add_parts(chunk.groups, parts, chunk.fold)

    def add(self, gid: torch.Tensor, stats: Mapping[str, ChunkStats], fold: int = 0) -> None:
        """Add one chunk of every layer (``stats``: layer -> :class:`ChunkStats`)."""
        chunk = self.begin_chunk(gid, fold)
        if chunk is not None:
            for layer in self.layers:
                self.add_layer(layer, chunk, stats[layer])

    def merge(self, other: GroupingSums) -> None:
        """Add ``other`` (same layers and window widths) into this one, by label."""
        if set(other.layers) != set(self.layers):
            raise GradnapError(f"grouping {self.name!r}: the results hold different layers")
        ids = self.group_ids(list(other.labels)).numpy()
        n = len(other.labels)
        self.unlabelled += other.unlabelled
        np.add.at(self.examples, ids, other.examples[:n])
        for layer, sums in self.layers.items():
            theirs = other.layers[layer].fields()
            mine = sums.fields()
            if set(theirs) != set(mine):
                raise GradnapError(
                    f"grouping {self.name!r}: the results keep different sums "
                    f"({', '.join(sorted(mine))} vs {', '.join(sorted(theirs))})"
                )
            for field, a in mine.items():
                o = theirs[field][:n]
                if o.shape[1:] != a.shape[1:]:
                    raise GradnapError(
                        f"layer {layer!r}: {field} shapes differ ({o.shape[1:]} vs "
                        f"{a.shape[1:]}): different models or window widths"
                    )
                np.add.at(a, ids, o.astype(a.dtype, copy=False))

    def reorder(self, labels: list[str]) -> None:
        """Re-index to exactly ``labels`` (a superset of the current ones, any order)."""
        missing = set(self.labels) - set(labels)
        if missing:
            raise GradnapError(f"grouping {self.name!r}: reorder drops {sorted(missing)}")
        old = GroupingSums(self.name, {}, self.spec)
        old.labels, old.index = self.labels, self.index
        old.examples, old.layers, old.unlabelled = self.examples, self.layers, self.unlabelled
        self.labels, self.index = [], {}
        self.examples = np.zeros(0, dtype=np.int64)
        self.unlabelled = 0
        self.layers = {
            layer: LayerSums.zeros(0, *s.shape, self.spec) for layer, s in old.layers.items()
        }
        self.group_ids(list(labels))
        self.merge(old)

    # --- the array codec ----------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays keyed ``labels``, ``examples``, ``<layer>/<field>``, trimmed to the
        labels (views, no copy)."""
        g = len(self.labels)
        out: dict[str, np.ndarray] = {
            "labels": np.array(self.labels, dtype=np.str_).reshape(g),
            "examples": self.examples[:g],
        }
        for layer, sums in self.layers.items():
            for field, a in sums.fields().items():
                out[f"{layer}/{field}"] = a[:g]
        return out

    @classmethod
    def from_arrays(
        cls,
        name: str,
        arrays: Mapping[str, np.ndarray],
        layer_shapes: Mapping[str, tuple[int, int]],
        unlabelled: int = 0,
        layout: FoldLayout = FORMAT3_LAYOUT,
        copy: bool = False,
    ) -> GroupingSums:
        """Inverse of :meth:`to_arrays`; ``layer_shapes``: layer -> ``(C, W)`` and
        ``layout`` (the run's :class:`FoldLayout`) from the result's metadata
        (``copy=False``: the sums are the given arrays)."""
        layers: dict[str, dict[str, np.ndarray]] = {layer: {} for layer in layer_shapes}
        for key, value in arrays.items():
            if "/" in key:
                layer, field = key.rsplit("/", 1)
                if field in _FIELDS and layer in layers:
                    layers[layer][field] = np.array(value, copy=copy or None)
        kept = [f for f in layers.values() if f]
        folds = {f["fold_act"].shape[1] for f in kept if "fold_act" in f}
        if len(folds) > 1:
            raise GradnapError(f"grouping {name!r}: layers hold different numbers of folds")
        spec = SumsSpec(
            naps=bool(kept) and all("sorted_sum" in f for f in kept),
            folds=folds.pop() if folds else 1,
            totals=not kept or all("act_sum" in f for f in kept),
            layout=layout,
        )
        self = cls(name, {}, spec)
        self.labels = [str(s) for s in arrays["labels"].tolist()]
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.examples = np.array(arrays["examples"], dtype=np.int64, copy=copy or None)
        self.unlabelled = int(unlabelled)
        for layer, fields in layers.items():
            c, w = layer_shapes[layer]
            sums = LayerSums(c, w, **fields)
            if sums.fold_act is not None:
                sums.bins = layout.columns(w)
                if int(sums.bins.max()) + 1 != sums.fold_act.shape[-1]:
                    raise GradnapError(
                        f"grouping {name!r}, layer {layer!r}: per-fold sums have "
                        f"{sums.fold_act.shape[-1]} bins, the metadata's layout ({layout}) "
                        f"gives {int(sums.bins.max()) + 1} for width {w}"
                    )
            self.layers[layer] = sums
        return self


class Accumulators:
    """The sums of every grouping of a run: ``{grouping name: GroupingSums}``, in order."""

    def __init__(self, groupings: Mapping[str, GroupingSums]) -> None:
        self.groupings = dict(groupings)

    @classmethod
    def zeros(
        cls,
        groupings: Mapping[str, tuple[int, SumsSpec]],
        layer_shapes: Mapping[str, tuple[int, int]],
    ) -> Accumulators:
        """Empty sums; ``groupings``: name -> (expected number of groups, what to keep);
        ``layer_shapes``: layer -> ``(C, W)``."""
        return cls(
            {
                name: GroupingSums(name, layer_shapes, spec, hint)
                for name, (hint, spec) in groupings.items()
            }
        )

    def __getitem__(self, name: str) -> GroupingSums:
        return self.groupings[name]

    def __iter__(self):
        return iter(self.groupings.values())

    def unlabelled(self) -> dict[str, int]:
        return {name: g.unlabelled for name, g in self.groupings.items()}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of a result file (no copies)."""
        out: dict[str, np.ndarray] = {}
        for name, gs in self.groupings.items():
            for key, value in gs.to_arrays().items():
                out[f"{PREFIX}/{name}/{key}"] = value
        return out

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        unlabelled: Mapping[str, int],
        layer_shapes: Mapping[str, tuple[int, int]],
        layout: FoldLayout = FORMAT3_LAYOUT,
        copy: bool = False,
    ) -> Accumulators:
        """The accumulators of the groupings ``unlabelled`` names (name -> examples
        without a label) from a result file's arrays (see
        :meth:`GroupingSums.from_arrays`)."""
        out = {}
        for name, n in unlabelled.items():
            prefix = f"{PREFIX}/{name}/"
            mine = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            if "labels" not in mine:
                raise GradnapError(f"result lacks the sums of grouping {name!r}")
            out[name] = GroupingSums.from_arrays(name, mine, layer_shapes, n, layout, copy)
        return cls(out)

    def merge(self, other: Accumulators) -> None:
        """Add ``other`` (the same groupings) into these sums, by label."""
        if list(other.groupings) != list(self.groupings):
            raise GradnapError(
                f"different groupings: {list(other.groupings)} vs {list(self.groupings)}"
            )
        for name, gs in self.groupings.items():
            gs.merge(other.groupings[name])


def array_key(grouping: str, *parts: str) -> str:
    """Name of an accumulator array in a result file: ``sums/<grouping>/<parts...>``."""
    return "/".join((PREFIX, grouping) + parts)
