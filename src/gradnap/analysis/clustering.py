"""Hierarchical clustering of profiles and silhouette scores (docs/method.md §1.8).

Everything here works on plain arrays, independent of how the profiles were collected:

- a *profile* of one group in one layer is an array ``(C_l, W_l)`` (neurons × window
  positions; ``(128 mel bins, W_0)`` for the input layer);
- a *set of profiles* is a ``dict[str, np.ndarray]`` (group label -> profile) of one layer;
- per-layer sets are ``dict[str, dict[str, np.ndarray]]`` (layer -> group -> profile).

Clustering (§1.8)
    Each group's GradNAP is flattened to a vector; groups are clustered with complete
    linkage on Euclidean distances (:func:`scipy.cluster.hierarchy.linkage`). A cut at
    percentile ``p`` uses the threshold ``t = np.percentile(d, p)`` (linear interpolation)
    of the ``n(n-1)/2`` pairwise distances ``d`` and keeps merges of height ``<= t``
    (:func:`scipy.cluster.hierarchy.fcluster`, ``criterion="distance"``). The silhouette
    score of a cut (:func:`silhouette`, equal to :func:`sklearn.metrics.silhouette_score`)
    is *undefined* when the cut gives one cluster or ``n`` clusters (every group alone);
    such a cut is reported with ``silhouette=None`` and a reason, never given a value.
    The layer's score is the mean over the defined cuts; when no cut is defined it is
    ``NaN`` and :attr:`LayerClustering.n_defined` is 0. Nothing here is specific to
    GradNAPs: the same functions cluster any profiles of equal shape, e.g. the NAP
    baseline (docs/method.md §1.9, ``Result.profiles(layer, grouping, kind="nap")``), tabulated
    with ``silhouette_table(..., kind="nap")``.

The chance level is collected with random-label groupings
(:func:`gradnap.method.groupings.random_label_grouping`) and clustered like the real ones.
This silhouette depends on group sizes (docs/method.md §6): random labels do not give a
floor for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gradnap.defaults import CLUSTER_PERCENTILES
from gradnap.errors import GradnapError

__all__ = [
    "silhouette",
    "ClusterCut",
    "LayerClustering",
    "cluster_profiles",
    "cluster_layers",
    "SilhouetteTable",
    "silhouette_table",
]

log = logging.getLogger(__name__)


def silhouette(distances, labels) -> float | None:
    """Mean silhouette coefficient of a clustering, or ``None`` when it is undefined.

    ``distances``: square ``(n, n)`` or condensed ``(n(n-1)/2,)`` distance matrix;
    ``labels``: ``(n,)`` cluster labels. Equal to :func:`sklearn.metrics.silhouette_score`
    with ``metric="precomputed"``: a group alone in its cluster scores 0, and a sample with
    ``a = b = 0`` scores 0. Undefined (``None``) unless ``2 <= clusters <= n - 1``.
    """
    from scipy.spatial.distance import squareform

    d = np.asarray(distances, dtype=np.float64)
    if d.ndim == 1:
        d = squareform(d, checks=False)
    labels = np.asarray(labels)
    n = len(labels)
    if d.shape != (n, n):
        raise GradnapError(f"silhouette: {d.shape} distances for {n} labels")
    uniq, inv = np.unique(labels, return_inverse=True)
    k = len(uniq)
    if not 2 <= k <= n - 1:
        return None
    onehot = np.zeros((n, k))
    onehot[np.arange(n), inv] = 1.0
    sizes = onehot.sum(axis=0)  # (k,)
    sums = d @ onehot  # (n, k): summed distance from each sample to each cluster
    own = sizes[inv]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sums[np.arange(n), inv] / (own - 1)  # NaN for singletons
        mean_other = sums / sizes
        mean_other[np.arange(n), inv] = np.inf
        b = mean_other.min(axis=1)
        s = (b - a) / np.maximum(a, b)
    return float(np.nan_to_num(s, nan=0.0).mean())


@dataclass(frozen=True)
class ClusterCut:
    """One cut of a dendrogram."""

    percentile: float
    #: Distance threshold (the percentile of the pairwise distances).
    threshold: float
    n_clusters: int
    #: ``(n,)`` cluster number of each group (1-based, from ``fcluster``).
    labels: np.ndarray
    #: Silhouette score, ``None`` when undefined.
    silhouette: float | None
    #: Why the score is undefined ("" when defined).
    reason: str = ""

    @property
    def defined(self) -> bool:
        return self.silhouette is not None


@dataclass(frozen=True)
class LayerClustering:
    """Complete-linkage clustering of one layer's group profiles and its cuts."""

    layer: str
    groups: tuple[str, ...]
    #: ``(n - 1, 4)`` scipy linkage matrix (empty ``(0, 4)`` for fewer than 2 groups).
    linkage: np.ndarray
    #: Condensed pairwise Euclidean distances ``(n(n-1)/2,)``.
    distances: np.ndarray
    cuts: tuple[ClusterCut, ...]

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def scores(self) -> np.ndarray:
        """Silhouette score of each cut ``(P,)``, NaN where undefined."""
        return np.array([np.nan if c.silhouette is None else c.silhouette for c in self.cuts])

    @property
    def n_defined(self) -> int:
        return sum(c.defined for c in self.cuts)

    @property
    def mean_silhouette(self) -> float:
        """Mean over the defined cuts; NaN when no cut is defined (see :attr:`n_defined`)."""
        s = [c.silhouette for c in self.cuts if c.silhouette is not None]
        return float(np.mean(s)) if s else float("nan")

    def cut(self, percentile: float) -> ClusterCut:
        """The cut at any ``percentile`` (0–100) of the pairwise distances."""
        return _cut(self.linkage, self.distances, self.n_groups, percentile)

    def to_dict(self) -> dict:
        """JSON-ready summary (undefined scores as ``None``)."""
        return {
            "layer": self.layer,
            "groups": list(self.groups),
            "mean_silhouette": None if self.n_defined == 0 else self.mean_silhouette,
            "n_defined": self.n_defined,
            "cuts": [
                {
                    "percentile": c.percentile,
                    "threshold": c.threshold,
                    "n_clusters": c.n_clusters,
                    "silhouette": c.silhouette,
                    "reason": c.reason,
                }
                for c in self.cuts
            ],
        }


def _cut(linkage: np.ndarray, dists: np.ndarray, n: int, percentile: float) -> ClusterCut:
    from scipy.cluster.hierarchy import fcluster

    if not 0.0 <= percentile <= 100.0:
        raise GradnapError(f"percentile {percentile} is outside 0..100")
    if n < 2:
        labels = np.ones(n, dtype=np.int64)
        return ClusterCut(percentile, float("nan"), n, labels, None, f"only {n} group(s)")
    threshold = float(np.percentile(dists, percentile))
    labels = fcluster(linkage, t=threshold, criterion="distance").astype(np.int64)
    k = len(np.unique(labels))
    score = silhouette(dists, labels)
    reason = ""
    if score is None:
        reason = "1 cluster" if k == 1 else f"{k} clusters (every group alone)"
    return ClusterCut(percentile, threshold, k, labels, score, reason)


def _flatten(profiles: Mapping[str, np.ndarray], layer: str) -> tuple[tuple[str, ...], np.ndarray]:
    groups = tuple(profiles)
    if not groups:
        return groups, np.zeros((0, 0))
    arrays = [np.asarray(profiles[g], dtype=np.float64) for g in groups]
    shape = arrays[0].shape
    for g, a in zip(groups, arrays, strict=True):
        if a.shape != shape:
            raise GradnapError(
                f"layer {layer!r}: profile of group {g!r} has shape {a.shape}, "
                f"group {groups[0]!r} has {shape}"
            )
    X = np.stack([a.reshape(-1) for a in arrays])  # (n, C*W)
    bad = ~np.isfinite(X)
    if bad.any():
        log.warning(
            "layer %s: %d non-finite profile entries (positions without data) counted as 0",
            layer,
            int(bad.sum()),
        )
        X = np.where(bad, 0.0, X)
    return groups, X


def cluster_profiles(
    profiles: Mapping[str, np.ndarray],
    percentiles: Sequence[float] = CLUSTER_PERCENTILES,
    *,
    layer: str = "",
) -> LayerClustering:
    """Cluster one layer's group profiles (group -> ``(C, W)``) and score each cut.

    Non-finite entries are counted as 0 (with a warning); all profiles must have the same
    shape. Fewer than 3 groups give only undefined cuts.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    groups, X = _flatten(profiles, layer)
    n = len(groups)
    if n >= 2:
        dists = pdist(X, metric="euclidean")  # (n(n-1)/2,)
        Z = linkage(dists, method="complete")
    else:
        dists = np.zeros(0)
        Z = np.zeros((0, 4))
    cuts = tuple(_cut(Z, dists, n, float(p)) for p in percentiles)
    for c in cuts:
        if not c.defined:
            log.info(
                "layer %s, %gth percentile: silhouette undefined (%s)",
                layer,
                c.percentile,
                c.reason,
            )
    return LayerClustering(layer, groups, Z, dists, cuts)


def cluster_layers(
    profiles: Mapping[str, Mapping[str, np.ndarray]],
    percentiles: Sequence[float] = CLUSTER_PERCENTILES,
) -> dict[str, LayerClustering]:
    """:func:`cluster_profiles` for every layer of ``{layer: {group: profile}}``."""
    return {
        layer: cluster_profiles(groups, percentiles, layer=layer)
        for layer, groups in profiles.items()
    }


@dataclass
class SilhouetteTable:
    """Mean silhouette per layer and grouping (e.g. grapheme, phoneme, chance)."""

    #: grouping -> layer -> clustering.
    clusterings: dict[str, dict[str, LayerClustering]]
    #: Which profiles were clustered (a label: ``"gradnap"``, ``"nap"``, ...).
    kind: str = "gradnap"

    @property
    def groupings(self) -> list[str]:
        return list(self.clusterings)

    @property
    def layers(self) -> list[str]:
        """Layers in first-seen order over all groupings."""
        seen: dict[str, None] = {}
        for per_layer in self.clusterings.values():
            seen.update(dict.fromkeys(per_layer))
        return list(seen)

    def mean(self, grouping: str, layer: str) -> float:
        """Mean silhouette over defined cuts; NaN when undefined or missing."""
        c = self.clusterings.get(grouping, {}).get(layer)
        return float("nan") if c is None else c.mean_silhouette

    def means(self, grouping: str) -> np.ndarray:
        """``(L,)`` mean silhouette of ``grouping`` over :attr:`layers` (NaN where undefined)."""
        return np.array([self.mean(grouping, layer) for layer in self.layers])

    def to_dict(self) -> dict:
        """JSON-ready: grouping -> layer -> :meth:`LayerClustering.to_dict`."""
        return {
            g: {layer: c.to_dict() for layer, c in per_layer.items()}
            for g, per_layer in self.clusterings.items()
        }

    def to_markdown(self) -> str:
        """A Markdown table: one row per layer, one column per grouping.

        Cells read ``0.123 (4/5)``: the mean over the defined cuts and how many cuts were
        defined; ``undefined`` when none was, ``–`` when the layer is missing.
        """
        head = "| layer | " + " | ".join(self.groupings) + " |"
        rule = "|---|" + "---|" * len(self.groupings)
        rows = [head, rule]
        for layer in self.layers:
            cells = []
            for g in self.groupings:
                c = self.clusterings[g].get(layer)
                if c is None:
                    cells.append("–")
                elif c.n_defined == 0:
                    cells.append(f"undefined (0/{len(c.cuts)})")
                else:
                    cells.append(f"{c.mean_silhouette:.3f} ({c.n_defined}/{len(c.cuts)})")
            rows.append(f"| {layer} | " + " | ".join(cells) + " |")
        return "\n".join(rows)


def silhouette_table(
    profiles: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    percentiles: Sequence[float] = CLUSTER_PERCENTILES,
    *,
    kind: str = "gradnap",
) -> SilhouetteTable:
    """Cluster ``{grouping: {layer: {group: profile}}}`` and tabulate the silhouettes.

    Profiles are ``(C_l, W_l)`` arrays of any kind, clustered the same way
    (:func:`cluster_layers`); ``kind`` only labels the table (``"gradnap"``, or ``"nap"``
    for the NAP baseline of docs/method.md §1.9, whose columns are ranks instead of time).
    Typical groupings: ``"grapheme"``, ``"phoneme"`` and a chance level collected with
    :func:`random_label_grouping` (name it ``"chance"``; the plots draw groupings whose
    name starts with ``chance`` dashed).
    """
    return SilhouetteTable(
        {g: cluster_layers(per_layer, percentiles) for g, per_layer in profiles.items()},
        kind=kind,
    )
