"""Dendrogram of one layer's group profiles, coloured by the clusters of one cut.

The clustering is the caller's (:func:`gradnap.analysis.cluster_profiles`,
docs/method.md §1.8); this module only draws it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradnap.defaults import CLUSTER_PERCENTILES
from gradnap.errors import GradnapError
from gradnap.figures._style import finish, get_axes

if TYPE_CHECKING:  # pragma: no cover
    from gradnap.analysis.clustering import ClusterCut, LayerClustering

__all__ = ["plot_dendrogram"]

#: Colour of the links above the cut.
ABOVE_CUT_COLOUR = "0.55"


def _cut_at(clustering: LayerClustering, percentile: float) -> ClusterCut:
    """The clustering's cut at ``percentile``: the one it holds, else
    :meth:`LayerClustering.cut` (the same function, at another percentile)."""
    for cut in clustering.cuts:
        if cut.percentile == percentile:
            return cut
    return clustering.cut(percentile)


def plot_dendrogram(
    clustering: LayerClustering,
    percentile: float = CLUSTER_PERCENTILES[len(CLUSTER_PERCENTILES) // 2],
    *,
    layer: str | None = None,
    grouping: str | None = None,
    title: str | None = None,
    caption: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Dendrogram of one layer's groups, coloured by the clusters of the cut at ``percentile``.

    ``clustering``: a :class:`~gradnap.analysis.LayerClustering`
    (:func:`gradnap.analysis.cluster_profiles` of the layer's profiles). The cut drawn is
    the one the clustering holds for ``percentile`` (``LayerClustering.cut`` when it
    holds none). The dashed line is the cut; links below it share their cluster's colour
    (the same clusters as the cut: merges of height ``<=`` the threshold), links above
    it are grey. ``layer``: the name in the title (default ``clustering.layer``);
    ``grouping``: the grouping whose groups are the leaves, named in the title.
    """
    from scipy.cluster.hierarchy import dendrogram

    if not hasattr(clustering, "linkage"):
        raise GradnapError(
            "plot_dendrogram draws a LayerClustering: cluster the profiles first "
            "(gradnap.analysis.cluster_profiles)"
        )
    name = layer or clustering.layer
    n = clustering.n_groups
    fig, axs, owned = get_axes(None if ax is None else [ax], 1, max(6.0, 0.22 * n + 2), 4.2)
    ax = axs[0]
    if n < 2:
        ax.text(0.5, 0.5, f"{n} group(s): nothing to cluster", ha="center", va="center")
        ax.set_axis_off()
    else:
        cut = _cut_at(clustering, percentile)
        dendrogram(
            clustering.linkage,
            labels=list(clustering.groups),
            # The cut keeps merges <= t, dendrogram colours links < color_threshold.
            color_threshold=float(np.nextafter(cut.threshold, np.inf)),
            above_threshold_color=ABOVE_CUT_COLOUR,
            leaf_rotation=90 if n > 12 else 0,
            leaf_font_size=8,
            ax=ax,
        )
        ax.axhline(cut.threshold, color="k", ls="--", lw=0.8)
        ax.set_ylabel("complete-linkage distance")
        score = "undefined" if cut.silhouette is None else f"{cut.silhouette:.3f}"
        reason = f" ({cut.reason})" if cut.reason else ""
        ax.set_title(
            f"cut at the {percentile:g}th percentile (d={cut.threshold:.3g}): "
            f"{cut.n_clusters} clusters, silhouette {score}{reason}",
            fontsize=9,
        )
    if title is None:
        of = f" of the {grouping} groups" if grouping else ""
        title = f"Dendrogram{of} in {name}" if name else f"Dendrogram{of}"
    return finish(fig, owned, title, caption, ax)
