"""The cross-validated cluster score per layer (docs/method.md §6), with error bars and
the zero line: the grapheme-vs-phoneme comparison whose chance value is 0.

The table is a :class:`~gradnap.analysis.crossval.ClusterScoreTable` or a plain
``{grouping: {layer: (score, standard error)}}`` mapping; nothing is computed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradnap.errors import GradnapError
from gradnap.figures._style import finish, get_axes, grouping_colours, is_chance_name, layer_axis

if TYPE_CHECKING:  # pragma: no cover
    from gradnap.analysis.crossval import ClusterScoreTable

__all__ = ["plot_cluster_scores"]

#: ``{grouping: {layer: (score, standard error)}}`` (NaN = undefined).
ScorePairs: TypeAlias = Mapping[str, Mapping[str, tuple[float, float]]]


def score_pairs(table: ClusterScoreTable | ScorePairs) -> dict[str, dict[str, tuple[float, float]]]:
    """``{grouping: {layer: (score, standard error)}}`` of a table or mapping."""
    scores = getattr(table, "scores", None)
    if scores is None:
        return {
            g: {layer: (float(v[0]), float(v[1])) for layer, v in per.items()}
            for g, per in table.items()  # type: ignore[union-attr]
        }
    return {
        g: {layer: (s.score, s.uncertainty) for layer, s in per.items()}
        for g, per in scores.items()
    }


def plot_cluster_scores(
    table: ClusterScoreTable | ScorePairs,
    *,
    sigmas: float = 2.0,
    chance: Sequence[str] | None = None,
    title: str | None = "Cross-validated cluster score per layer",
    caption: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The cluster score of every grouping per layer, ± ``sigmas`` standard errors.

    ``table``: a :class:`~gradnap.analysis.crossval.ClusterScoreTable` (standard error:
    its jackknife uncertainty) or ``{grouping: {layer: (score, standard error)}}``. Real
    groupings are filled markers joined by a solid line; random-label groupings (named in
    ``chance``, default: names starting with ``chance`` or ``random``) hollow markers
    joined by a dashed line, in the colour of the grouping their name contains: the
    empirical check that the score sits at 0. The groupings of one layer are drawn side by
    side around the layer's tick. Undefined scores are gaps and undefined errors no bar
    (the legend counts the layers without a bar). The line at 0 is the chance value.
    """
    pairs = score_pairs(table)
    layers = list(dict.fromkeys(layer for per in pairs.values() for layer in per))
    if not layers:
        raise GradnapError("plot_cluster_scores: the table holds no layer")
    if not sigmas > 0:
        raise GradnapError(f"plot_cluster_scores: sigmas {sigmas} must be > 0")
    fig, axs, owned = get_axes(
        None if ax is None else [ax], 1, max(6.0, 0.6 * len(layers) + 2.5), 4.2
    )
    ax = axs[0]
    colours = grouping_colours(pairs, chance)
    x = np.arange(len(layers), dtype=np.float64)
    n = len(pairs)
    width = min(0.6, 0.15 * n)
    offsets = np.linspace(-width / 2, width / 2, n) if n > 1 else np.zeros(1)
    for (g, per), dx in zip(pairs.items(), offsets, strict=True):
        y = np.array([per.get(layer, (np.nan, np.nan))[0] for layer in layers], dtype=float)
        se = np.array([per.get(layer, (np.nan, np.nan))[1] for layer in layers], dtype=float)
        no_bar = int((np.isfinite(y) & ~np.isfinite(se)).sum())
        label = f"{g} (±{sigmas:g} SE)"
        if no_bar:
            label += f", {no_bar} layer(s) without SE"
        style: dict[str, Any]
        if is_chance_name(g, chance):
            style = dict(ls="--", marker="o", ms=4, mfc="white", lw=1.0, elinewidth=1.0)
        else:
            style = dict(ls="-", marker="o", ms=5, lw=1.8, elinewidth=1.4)
        ax.errorbar(
            x + dx,
            y,
            yerr=np.where(np.isfinite(se), sigmas * se, np.nan),
            color=colours[g],
            capsize=2.5,
            label=label,
            **style,
        )
    ax.axhline(0.0, color="k", lw=0.8, zorder=0)
    layer_axis(ax, x, layers, "cluster score (chance: 0)")
    return finish(fig, owned, title, caption, ax)
