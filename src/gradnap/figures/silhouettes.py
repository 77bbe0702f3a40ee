"""Silhouette curves (paper Fig. 4): mean silhouette per layer for each grouping, the
chance levels dashed, optionally a baseline table (e.g. the NAPs) dotted beside them.

The tables are :func:`gradnap.analysis.silhouette_table` (docs/method.md §1.8, §1.9) or
plain ``{grouping: {layer: score}}`` mappings; nothing is clustered here.
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
    from gradnap.analysis.clustering import LayerClustering, SilhouetteTable

__all__ = ["plot_silhouettes"]

#: ``{grouping: {layer: clustering or score}}`` (``None``/NaN = undefined).
ScoreTable: TypeAlias = (
    "SilhouetteTable | Mapping[str, Mapping[str, LayerClustering | float | None]]"
)

#: How profile kinds (``SilhouetteTable.kind``) are named in legends.
KIND_NAMES = {"gradnap": "GradNAP", "nap": "NAP", "navai": "NAvAI"}


def _per_grouping(table) -> Mapping[str, Mapping[str, Any]]:
    """grouping -> layer -> clustering or score, of a :class:`SilhouetteTable` or mapping."""
    return getattr(table, "clusterings", table)


def _table_layers(*tables) -> list[str]:
    """Layers of silhouette tables in first-seen order."""
    layers: dict[str, None] = {}
    for table in tables:
        for per_layer in _per_grouping(table).values():
            layers.update(dict.fromkeys(per_layer))
    return list(layers)


def _silhouette_series(
    table, names: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]], dict[str, int]]:
    """grouping -> means over ``names`` (L,) (NaN: undefined or absent), grouping ->
    per-layer cut scores, grouping -> number of layers it has but that are undefined."""
    means: dict[str, np.ndarray] = {}
    cuts: dict[str, list[np.ndarray]] = {}
    undefined: dict[str, int] = {}
    for g, per_layer in _per_grouping(table).items():
        m, c = [], []
        for layer in names:
            v = per_layer.get(layer)
            if v is not None and hasattr(v, "mean_silhouette"):  # a LayerClustering
                m.append(v.mean_silhouette)
                c.append(v.scores)
            else:
                m.append(np.nan if v is None else float(v))
                c.append(np.zeros(0))
        means[g] = np.array(m, dtype=np.float64)
        cuts[g] = c
        present = np.array([layer in per_layer for layer in names], dtype=bool)
        undefined[g] = int((np.isnan(means[g]) & present).sum())
    return means, cuts, undefined


def plot_silhouettes(
    table: ScoreTable,
    *,
    baseline: ScoreTable | None = None,
    baseline_name: str | None = None,
    chance: Sequence[str] | None = None,
    show_cuts: bool = True,
    title: str | None = "Silhouette scores per layer",
    caption: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Mean silhouette per layer for each grouping (e.g. grapheme vs phoneme).

    ``table``: a :class:`SilhouetteTable` or ``{grouping: {layer: clustering or score}}``
    (``None``/NaN = undefined). Groupings named in ``chance`` (default: names starting with
    ``chance`` or ``random``) are drawn dashed, in the colour of the grouping their name
    contains. Undefined points are not drawn (lines break there; the legend counts them,
    layers a grouping lacks are gaps too but not counted); with ``show_cuts`` each defined
    cut's score is a small dot.

    ``baseline``: a second table of the same form computed on other profiles, e.g. the
    NAP baseline (``silhouette_table(..., kind="nap")``, docs/method.md §1.9). Its groupings are
    drawn in the colour of the grouping of the same name (or the one their name contains)
    with hollow square markers, dotted (chance groupings dash-dotted), and labelled
    ``"<grouping> (<baseline_name>)"``; ``baseline_name`` defaults to the table's
    ``kind`` ("NAP"). With a baseline, the main table's labels say its kind too
    ("grapheme (GradNAP)"). The x axis holds the layers of both tables.
    """
    layers = _table_layers(table, *([] if baseline is None else [baseline]))
    if not layers:
        raise GradnapError("plot_silhouettes: the table holds no layer")
    fig, axs, owned = get_axes(
        None if ax is None else [ax], 1, max(6.0, 0.55 * len(layers) + 2), 4.0
    )
    ax = axs[0]

    def is_chance(name: str) -> bool:
        return is_chance_name(name, chance)

    def kind_name(t, default: str) -> str:
        kind = getattr(t, "kind", None)
        return default if kind is None else KIND_NAMES.get(kind, kind)

    series = [(*_silhouette_series(table, layers), False)]
    if baseline is not None:
        series.append((*_silhouette_series(baseline, layers), True))
        main_name = kind_name(table, "")
        base_name = baseline_name or kind_name(baseline, "baseline")

    # one colour per real grouping; chance and baseline groupings take their owner's colour
    colours = grouping_colours((g for means, *_ in series for g in means), chance)

    x = np.arange(len(layers))
    for means, cuts, n_undefined, is_base in series:
        for g, m in means.items():
            style: dict[str, Any]
            if is_base:
                style = dict(marker="s", mfc="none", ls="-." if is_chance(g) else ":")
                style.update(dict(ms=3, lw=1.0) if is_chance(g) else dict(ms=5, lw=1.6))
            elif is_chance(g):
                style = dict(ls="--", marker="o", ms=3, lw=1.2)
            else:
                style = dict(marker="o", ms=5, lw=2)
            undefined = n_undefined[g]
            label = g
            if baseline is not None:
                suffix = base_name if is_base else main_name
                label = f"{g} ({suffix})" if suffix else g
            if undefined:
                label = f"{label} ({undefined} layer(s) undefined)"
            ax.plot(x, m, color=colours[g], label=label, **style)
            if show_cuts:
                dot: dict[str, Any] = dict(marker="s", mfc="none", ms=3) if is_base else {}
                dot = {"marker": ".", "ms": 4, **dot}
                for i, sc in enumerate(cuts[g]):
                    sc = sc[np.isfinite(sc)]
                    ax.plot(np.full(sc.size, x[i]), sc, ls="", color=colours[g], alpha=0.35, **dot)
    ax.axhline(0.0, color="k", lw=0.5)
    layer_axis(ax, x, layers, "mean silhouette score")
    return finish(fig, owned, title, caption, ax)
