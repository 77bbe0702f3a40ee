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

from gradnap.errors import GradnapError
from gradnap.method.windows import Aligned

__all__ = ["ChunkStats", "chunk_stats", "LayerSums", "GroupingSums"]

log = logging.getLogger(__name__)


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
