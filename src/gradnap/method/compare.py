"""Compare two results of the same model and options: the largest differences, by label.

Two runs over the same data should give the same sums up to float rounding, however the
work was split (threads, workers, shards, ranks; docs/method.md §5). The groups of a
result are numbered in order of first appearance, which differs between such runs, so
arrays are matched by label, never by row. Each difference is relative to the largest
absolute value of the array (of either result), so one number per array says how far
apart the runs are. A result file holds its per-fold sums as float16 means (relative
rounding up to ``2**-11``): compare a file with a file, not with a result in memory.

>>> report = compare_results("a.npz", "b.npz")
>>> report.worst.relative            # the largest relative difference of any array
>>> print(report.table())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradnap.errors import GradnapError
from gradnap.method.accumulators import array_key
from gradnap.method.groupings import ALL
from gradnap.method.result import Result

__all__ = ["Comparison", "Difference", "compare_results"]


@dataclass(frozen=True)
class Difference:
    """The largest difference of one array (or one kind of profile) between two results."""

    grouping: str
    #: ``None`` for the examples per group.
    layer: str | None
    #: The accumulator field (``act_sum``, ``grad_sum``, ...), ``examples`` or ``gradnap``
    #: (the GradNAP profiles of the groups with at least ``min_count`` examples).
    what: str
    #: The group with the largest difference (``""`` when nothing differs).
    label: str
    #: Largest absolute difference.
    diff: float
    #: Largest absolute value of the array in either result (of that group's profile for
    #: ``gradnap``).
    scale: float

    @property
    def relative(self) -> float:
        """``diff / scale`` (0 when both are 0)."""
        if self.diff == 0:
            return 0.0
        return self.diff / self.scale if self.scale > 0 else float("inf")


@dataclass(frozen=True)
class Comparison:
    """Every :class:`Difference` of two results and the labels only one of them has."""

    differences: tuple[Difference, ...]
    #: ``{grouping: (labels only in A, labels only in B)}`` for groupings whose labels differ.
    unmatched: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]

    @property
    def worst(self) -> Difference | None:
        """The difference with the largest :attr:`~Difference.relative` value."""
        return max(self.differences, key=lambda d: d.relative, default=None)

    def within(self, tol: float) -> bool:
        """Same labels, and every relative difference at most ``tol``."""
        return not self.unmatched and all(d.relative <= tol for d in self.differences)

    def per_layer(self) -> list[tuple[str, str, Difference, Difference | None]]:
        """Per grouping and layer: the largest difference of the sums (any field) and of
        the GradNAP profiles (``None`` when no group has ``min_count`` examples)."""
        out = []
        keys = dict.fromkeys((d.grouping, d.layer) for d in self.differences if d.layer)
        for grouping, layer in keys:
            mine = [d for d in self.differences if (d.grouping, d.layer) == (grouping, layer)]
            sums = max((d for d in mine if d.what != "gradnap"), key=lambda d: d.relative)
            prof = max(
                (d for d in mine if d.what == "gradnap"), key=lambda d: d.relative, default=None
            )
            assert layer is not None
            out.append((grouping, layer, sums, prof))
        return out

    def table(self) -> str:
        """One line per grouping and layer: the largest relative difference of the sums
        (which field, which group) and of the GradNAP profiles; then the example counts
        and any labels only one result has."""

        def cell(d: Difference | None, field: bool) -> str:
            if d is None:
                return f"{'-':>10}  {'':<24}"
            where = f"{d.what} {d.label!r}" if field else repr(d.label)
            return f"{d.relative:10.3g}  {where if d.diff else '':<24}"

        head = f"{'grouping':<10} {'layer':<8} {'sums':>10}  {'(field, group)':<24} {'gradnap':>10}  (group)"
        lines = [head]
        for grouping, layer, sums, prof in self.per_layer():
            row = f"{grouping:<10} {layer:<8} {cell(sums, True)} {cell(prof, False)}"
            lines.append(row.rstrip())
        for d in self.differences:
            if d.what == "examples" and d.diff:
                lines.append(
                    f"{d.grouping}: example counts differ (largest: {d.diff:g} in {d.label!r})"
                )
        for grouping, (only_a, only_b) in self.unmatched.items():
            lines.append(
                f"{grouping}: labels only in A: {', '.join(only_a) or '-'}; "
                f"only in B: {', '.join(only_b) or '-'}"
            )
        return "\n".join(lines)


def _largest(a: np.ndarray, b: np.ndarray, labels: list[str]) -> tuple[str, float, float]:
    """``(label, max |a - b|, max(|a|, |b|))`` of arrays whose axis 0 is ``labels``."""
    if a.size == 0:
        return "", 0.0, 0.0
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).reshape(len(labels), -1)
    per_group = diff.max(axis=1)
    i = int(per_group.argmax())
    scale = float(max(np.abs(a).max(), np.abs(b).max()))
    return (labels[i] if per_group[i] > 0 else ""), float(per_group[i]), scale


def compare_results(
    a: Result | str | Path, b: Result | str | Path, *, profiles: bool = True
) -> Comparison:
    """The largest difference of every accumulator array (per grouping, layer and field;
    and of the examples per group) between ``a`` and ``b``, matched by label, and of the
    GradNAP profiles (``profiles=True``) of the groups with at least ``min_count``
    examples in both (relative to the larger maximum of the two profiles, worst group).

    Both results must hold the same layers (names and shapes) and groupings, else
    :class:`GradnapError`; labels only one of them has are listed in
    :attr:`Comparison.unmatched` and left out of the differences.
    """
    ra, rb = (r if isinstance(r, Result) else Result.load(r) for r in (a, b))
    layers = [(d.name, d.channels, d.width) for d in ra.meta.layers]
    if layers != [(d.name, d.channels, d.width) for d in rb.meta.layers]:
        raise GradnapError(
            f"compare: the results hold different layers ({', '.join(ra.layers)} vs "
            f"{', '.join(rb.layers)}) or window widths"
        )
    if ra.groupings != rb.groupings:
        raise GradnapError(
            f"compare: the results hold different groupings ({', '.join(ra.groupings)} vs "
            f"{', '.join(rb.groupings)})"
        )
    for what, in_a, in_b in (
        ("NAP sums", ra.has_naps, rb.has_naps),
        ("folds", ra.folds, rb.folds),
    ):
        if in_a != in_b:
            raise GradnapError(f"compare: the results differ in {what} ({in_a} vs {in_b})")
    out: list[Difference] = []
    unmatched: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for grouping in [*ra.groupings, ALL]:
        la, lb = ra.labels(grouping), rb.labels(grouping)
        row_b = {label: i for i, label in enumerate(lb)}
        common = [label for label in la if label in row_b]
        if set(la) != set(lb):
            unmatched[grouping] = (
                tuple(sorted(set(la) - set(lb))),
                tuple(sorted(set(lb) - set(la))),
            )
        rows = (
            np.array([i for i, label in enumerate(la) if label in row_b], dtype=np.int64),
            np.array([row_b[label] for label in common], dtype=np.int64),
        )
        x, y = _matched(ra, rb, array_key(grouping, "examples"), rows)
        out.append(Difference(grouping, None, "examples", *_largest(x, y, common)))
        for layer in ra.layers:
            prefix = array_key(grouping, layer) + "/"
            for key in [k for k in ra.arrays if k.startswith(prefix)]:
                x, y = _matched(ra, rb, key, rows)
                field = key[len(prefix) :]
                out.append(Difference(grouping, layer, field, *_largest(x, y, common)))
            # profiles of real groupings (the dataset-wide group's GradNAP is 0; random-label
            # groupings keep per-fold sums only)
            if profiles and grouping != ALL and array_key(grouping, layer, "act_sum") in ra.arrays:
                out.append(_profile_difference(ra, rb, grouping, layer, common))
    return Comparison(tuple(out), unmatched)


def _matched(
    ra: Result, rb: Result, key: str, rows: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Array ``key`` of both results, rows ``rows[0]`` of A and ``rows[1]`` of B (the
    same labels in the same order)."""
    if key not in rb.arrays:
        raise GradnapError(f"compare: only result A holds {key}")
    return ra.arrays[key][rows[0]], rb.arrays[key][rows[1]]


def _profile_difference(
    ra: Result, rb: Result, grouping: str, layer: str, labels: list[str]
) -> Difference:
    """The group whose GradNAP profile differs most, relative to the profile's maximum."""
    worst = Difference(grouping, layer, "gradnap", "", 0.0, 0.0)
    for label in sorted(set(ra.groups(grouping)) & set(rb.groups(grouping)) & set(labels)):
        pa = ra.profile(layer, label, grouping)
        pb = rb.profile(layer, label, grouping)
        lab, diff, scale = _largest(pa[None], pb[None], [label])
        d = Difference(grouping, layer, "gradnap", lab, diff, scale)
        if d.relative > worst.relative or (worst.scale == 0 and d.scale > 0):
            worst = d
    return worst
