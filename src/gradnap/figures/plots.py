"""Figures of the paper (DESIGN "Plots"), drawn with matplotlib, headless.

Every function draws into the axes it is given (``ax=None`` / ``axes=None``: a new
figure) and returns the :class:`matplotlib.figure.Figure`. New figures are plain
``Figure`` objects rendered by the Agg canvas; pyplot is never used, so nothing needs a
display and no global figure state is kept. Every function takes ``title`` and
``caption`` (one line on what was computed and on how many examples): the caption is
written under a figure the function created (under the axes otherwise) and kept in
``fig.gradnap_meta``; :func:`save_figure` writes it into the PNG's metadata.

Inputs are plain arrays, as in :mod:`gradnap.analysis`: a profile ``(C, W)``, window
offsets in ms ``(W,)``, mel-bin centre frequencies in Hz ``(F,)``
(:func:`gradnap.features.mel_frequencies`).
"""

from __future__ import annotations

import io
import logging
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradnap.analysis.clustering import LayerClustering, SilhouetteTable, cluster_profiles
from gradnap.analysis.optimal_input import OptimalInput
from gradnap.analysis.responsiveness import responsiveness, top_neurons
from gradnap.defaults import CLUSTER_PERCENTILES, FEATURES, OPTIMAL_INPUT
from gradnap.errors import GradnapError
from gradnap.fileio import atomic_write_bytes

__all__ = [
    "plot_input_gradnap",
    "plot_input_gradnaps",
    "plot_action_potentials",
    "plot_naps",
    "plot_silhouettes",
    "plot_dendrogram",
    "save_figure",
]

log = logging.getLogger(__name__)

#: Diverging colour map of all heatmaps (blue negative, red positive, white 0).
CMAP = "RdBu_r"
#: Frequencies (Hz) labelled on mel axes, where inside the range.
HZ_TICKS = (250, 500, 1000, 2000, 3000, 4000, 6000)
_TIME_LABEL = "time relative to alignment (ms)"
#: How profile kinds (``SilhouetteTable.kind``) are named in legends.
_KIND_NAMES = {"gradnap": "GradNAP", "nap": "NAP", "navai": "NAvAI"}


# --------------------------------------------------------------------------------------
# helpers


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _finish(fig: Figure, owned: bool, title: str | None, caption: str | None, ax: Axes) -> Figure:
    """Title, caption and metadata of a figure."""
    if owned and title:
        fig.suptitle(title, fontsize=11)
    elif title and not ax.get_title():
        ax.set_title(title, fontsize=10)
    if caption:
        width = max(40, int(fig.get_figwidth() * 15))
        text = "\n".join(textwrap.wrap(caption, width))
        if owned:
            fig.supxlabel(text, fontsize=8, color="0.25")
        else:
            ax.annotate(
                text,
                xy=(0, 0),
                xycoords="axes fraction",
                xytext=(0, -30),
                textcoords="offset points",
                va="top",
                fontsize=7,
                color="0.25",
            )
    meta = getattr(fig, "gradnap_meta", {})
    meta = {
        **meta,
        **({"title": title} if title else {}),
        **({"caption": caption} if caption else {}),
    }
    fig.gradnap_meta = meta  # type: ignore[attr-defined]
    return fig


def _axes(axes, n: int, width: float, height: float, **kw) -> tuple[Figure, list[Axes], bool]:
    if axes is None:
        fig = _new_figure(width, height)
        made = fig.subplots(1, n, squeeze=False, **kw)[0]
        return fig, list(made), True
    if isinstance(axes, Axes):
        axes = [axes]
    axes = list(axes)
    if len(axes) != n:
        raise GradnapError(f"expected {n} axes, got {len(axes)}")
    return axes[0].figure, axes, False


def _times(times_ms, n: int) -> tuple[np.ndarray, str]:
    if times_ms is None:
        return np.arange(n) - (n - 1) / 2.0, "position relative to alignment"
    t = np.asarray(times_ms, dtype=np.float64).reshape(-1)
    if t.shape != (n,):
        raise GradnapError(f"times_ms has {t.size} entries for {n} window positions")
    return t, _TIME_LABEL


def _freqs(freqs, n: int) -> np.ndarray:
    if freqs is None:
        from gradnap.features import mel_frequencies

        freqs = mel_frequencies()
    f = np.asarray(freqs, dtype=np.float64).reshape(-1)
    if f.shape != (n,):
        raise GradnapError(f"freqs has {f.size} entries for {n} frequency bins")
    return f


def _limit(a: np.ndarray) -> float:
    m = float(np.nanmax(np.abs(a))) if a.size and np.isfinite(a).any() else 0.0
    return m if m > 0 else 1.0


def _heatmap(ax: Axes, data: np.ndarray, t: np.ndarray, f: np.ndarray, label: str, fig: Figure):
    """Spectrogram-like heatmap ``data`` ``(F, W)``: time ``t`` (ms) × mel bins labelled in Hz."""
    lim = _limit(data)
    dt = float(t[1] - t[0]) if len(t) > 1 else 1.0
    extent = (t[0] - dt / 2, t[-1] + dt / 2, -0.5, data.shape[0] - 0.5)
    im = ax.imshow(
        data,
        origin="lower",
        aspect="auto",
        cmap=CMAP,
        vmin=-lim,
        vmax=lim,
        extent=extent,
        interpolation="nearest",
    )
    ticks = [hz for hz in HZ_TICKS if f[0] <= hz <= f[-1]]
    ax.set_yticks(np.interp(ticks, f, np.arange(len(f))), [str(hz) for hz in ticks])
    ax.set_ylabel("frequency (Hz)")
    fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    return im


# --------------------------------------------------------------------------------------
# input-layer GradNAPs


def plot_input_gradnap(
    gradnap,
    navai=None,
    *,
    times_ms=None,
    freqs=None,
    group: str = "",
    title: str | None = None,
    caption: str | None = None,
    axes=None,
) -> Figure:
    """Input-layer GradNAP of one group as a heatmap, with its NAvAI beside it.

    ``gradnap``, ``navai``: ``(F, W_0)`` (mel bins × window positions); ``times_ms``
    ``(W_0,)`` window offsets in ms (default: positions); ``freqs`` ``(F,)`` mel-bin centres
    in Hz (default :func:`gradnap.features.mel_frequencies`). Each panel has its own
    symmetric colour limits, centred on 0. ``axes``: one axes, or two when ``navai`` is
    given.
    """
    g = np.asarray(gradnap, dtype=np.float64)
    if g.ndim != 2:
        raise GradnapError(f"gradnap: expected (F, W), got shape {g.shape}")
    panels = [("GradNAP", g)]
    if navai is not None:
        nv = np.asarray(navai, dtype=np.float64)
        if nv.shape != g.shape:
            raise GradnapError(f"navai has shape {nv.shape}, gradnap {g.shape}")
        panels.append(("NAvAI", nv))
    fig, axs, owned = _axes(axes, len(panels), 5.2 * len(panels), 3.8)
    t, tlabel = _times(times_ms, g.shape[1])
    f = _freqs(freqs, g.shape[0])
    for ax, (name, data) in zip(axs, panels, strict=True):
        _heatmap(ax, data, t, f, name, fig)
        ax.axvline(0.0, color="k", lw=0.6, ls=":", alpha=0.4)
        ax.set_xlabel(tlabel)
        ax.set_title(f"{name} {group}".strip(), fontsize=10)
    if title is None:
        title = f"Input layer, group {group}" if group else "Input layer"
    return _finish(fig, owned, title, caption, axs[0])


def plot_input_gradnaps(
    gradnaps: Mapping[str, np.ndarray],
    navais: Mapping[str, np.ndarray] | None = None,
    *,
    times_ms=None,
    freqs=None,
    title: str | None = "Input-layer GradNAPs",
    caption: str | None = None,
    axes=None,
) -> Figure:
    """Input-layer GradNAPs of several groups, one row each (GradNAP | NAvAI).

    ``gradnaps``: group -> ``(F, W_0)``; ``navais`` the same groups (optional). ``axes``:
    ``(rows, 1 or 2)`` array of axes.
    """
    if not gradnaps:
        raise GradnapError("plot_input_gradnaps: no groups given")
    groups = list(gradnaps)
    ncols = 2 if navais is not None else 1
    if navais is not None:
        missing = [g for g in groups if g not in navais]
        if missing:
            raise GradnapError(f"navais: no profile for group(s) {', '.join(missing)}")
    if axes is None:
        fig = _new_figure(5.2 * ncols, 2.9 * len(groups))
        grid = fig.subplots(len(groups), ncols, squeeze=False)
        owned = True
    else:
        grid = np.asarray(axes, dtype=object).reshape(len(groups), ncols)
        fig, owned = grid[0, 0].figure, False
    for i, (row, group) in enumerate(zip(grid, groups, strict=True)):
        plot_input_gradnap(
            gradnaps[group],
            None if navais is None else navais[group],
            times_ms=times_ms,
            freqs=freqs,
            group=group,
            title="",
            axes=list(row),
        )
        if i < len(groups) - 1:
            for ax in row:
                ax.set_xlabel("")
    return _finish(fig, owned, title, caption, grid[0, 0])


# --------------------------------------------------------------------------------------
# action potentials


def plot_action_potentials(
    profile,
    *,
    times_ms=None,
    k: int = OPTIMAL_INPUT.top_k,
    optimal: OptimalInput | np.ndarray | None = None,
    freqs=None,
    group: str = "",
    layer: str = "",
    title: str | None = None,
    caption: str | None = None,
    axes=None,
) -> Figure:
    """All neurons of a layer's GradNAP as lines over window time, the top ``k`` coloured.

    ``profile``: ``(C, W)``; ``times_ms`` ``(W,)``. The top neurons (by ``|r_n|``,
    :func:`gradnap.analysis.responsiveness.top_neurons`) are coloured and labelled with their
    responsiveness, the rest grey. ``optimal`` (an :class:`OptimalInput` or an array
    ``(F, RF)``) is drawn beside them as a spectrogram, time relative to the centre of
    the receptive field. ``axes``: one axes, or two with ``optimal``.
    """
    p = np.asarray(profile, dtype=np.float64)
    if p.ndim != 2:
        raise GradnapError(f"profile: expected (C, W), got shape {p.shape}")
    fig, axs, owned = _axes(
        axes, 1 if optimal is None else 2, 11.0 if optimal is not None else 6.0, 4.0
    )
    ax = axs[0]
    t, tlabel = _times(times_ms, p.shape[1])
    top = top_neurons(p, k)
    r = responsiveness(p)
    rest = np.setdiff1d(np.arange(p.shape[0]), top)
    if rest.size:
        ax.plot(t, p[rest].T, color="0.72", lw=0.6, alpha=0.8)
        ax.plot([], [], color="0.72", lw=0.6, label=f"other {rest.size} neurons")
    for i, n in enumerate(top):
        ax.plot(t, p[n], color=f"C{i % 10}", lw=1.8, label=f"neuron {n} (r={r[n]:+.3g})")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.axvline(0.0, color="k", lw=0.5, ls=":")
    ax.set_xlabel(tlabel)
    ax.set_ylabel("GradNAP")
    ax.set_xlim(t[0], t[-1])
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    ax.set_title(
        f"{layer} {group}: all {p.shape[0]} neurons, top {len(top)} coloured".strip(), fontsize=10
    )
    if optimal is not None:
        oax = axs[1]
        if isinstance(optimal, OptimalInput):
            x, ot = optimal.x, optimal.times_ms
            neurons = ", ".join(str(int(n)) for n in optimal.neurons)
            oax.set_title(f"optimal input for neurons {neurons}", fontsize=10)
        else:
            x = np.asarray(optimal, dtype=np.float64)
            if x.ndim != 2:
                raise GradnapError(f"optimal: expected (F, RF), got shape {x.shape}")
            ot = (np.arange(x.shape[1]) - (x.shape[1] - 1) / 2) * FEATURES.frame_seconds * 1000
            oax.set_title("optimal input", fontsize=10)
        _heatmap(oax, x, ot, _freqs(freqs, x.shape[0]), "input (z-normalised log-mel)", fig)
        oax.set_xlabel("time relative to receptive-field centre (ms)")
    if title is None:
        title = (
            f"Action potentials, {layer}, group {group}" if group else f"Action potentials {layer}"
        )
    return _finish(fig, owned, title.strip(), caption, ax)


# --------------------------------------------------------------------------------------
# NAPs (baseline, DESIGN §1.9)


def plot_naps(
    naps: Mapping[str, np.ndarray],
    *,
    layer: str = "",
    shared_limits: bool = True,
    title: str | None = None,
    caption: str | None = None,
    axes=None,
) -> Figure:
    """NAPs of a few groups of one layer as heatmaps, one panel per group (DESIGN §1.9).

    ``naps``: group -> ``(C, W)`` NAP (``Result.profile(layer, group, grouping,
    kind="nap")``): neurons × rank, rank 1 = each neuron's largest activation in the
    aligned window (columns are ranks, not time). All groups must have the same shape.
    Rows keep the neuron order, so panels compare neuron by neuron. Diverging colour map
    centred on 0 with symmetric limits: with ``shared_limits`` (default) one limit
    ``max |NAP|`` over all panels and one colour bar, so groups compare on one scale;
    otherwise each panel has its own limit and colour bar. ``axes``: ``len(naps)`` axes.
    """
    if not naps:
        raise GradnapError("plot_naps: no groups given")
    groups = list(naps)
    arrays = [np.asarray(naps[g], dtype=np.float64) for g in groups]
    shape = arrays[0].shape
    for g, a in zip(groups, arrays, strict=True):
        if a.ndim != 2:
            raise GradnapError(f"NAP of group {g!r}: expected (C, W), got shape {a.shape}")
        if a.shape != shape:
            raise GradnapError(
                f"NAP of group {g!r} has shape {a.shape}, group {groups[0]!r} has {shape}"
            )
    c, w = shape
    fig, axs, owned = _axes(axes, len(groups), 2.6 * len(groups) + 1.4, 3.8)
    shared = _limit(np.stack(arrays)) if shared_limits else None
    label = "NAP (mean sorted activation − dataset mean) / std"
    images = []
    for i, (ax, g, a) in enumerate(zip(axs, groups, arrays, strict=True)):
        lim = shared if shared is not None else _limit(a)
        im = ax.imshow(
            a,
            origin="lower",
            aspect="auto",
            cmap=CMAP,
            vmin=-lim,
            vmax=lim,
            extent=(0.5, w + 0.5, -0.5, c - 0.5),
            interpolation="auto",  # nearest when magnified, smoothed when many neurons
        )
        images.append(im)
        ax.set_title(f"{g}", fontsize=10)
        ax.set_xlabel("rank (1 = largest)")
        if i == 0:
            ax.set_ylabel(f"{layer} neuron".strip())
        if shared is None:
            fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    if shared is not None:
        fig.colorbar(images[-1], ax=axs, label=label, shrink=0.9)
    if title is None:
        title = f"NAPs of {layer}" if layer else "NAPs"
    return _finish(fig, owned, title, caption, axs[0])


# --------------------------------------------------------------------------------------
# silhouette curves


def _table_layers(*tables) -> list[str]:
    """Layers of silhouette tables in first-seen order."""
    layers: dict[str, None] = {}
    for table in tables:
        if isinstance(table, SilhouetteTable):
            table = table.clusterings
        for per_layer in table.values():
            layers.update(dict.fromkeys(per_layer))
    return list(layers)


def _silhouette_series(
    table, names: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]], dict[str, int]]:
    """grouping -> means over ``names`` (L,) (NaN: undefined or absent), grouping ->
    per-layer cut scores, grouping -> number of layers it has but that are undefined."""
    if isinstance(table, SilhouetteTable):
        table = table.clusterings
    means: dict[str, np.ndarray] = {}
    cuts: dict[str, list[np.ndarray]] = {}
    undefined: dict[str, int] = {}
    for g, per_layer in table.items():
        m, c = [], []
        for layer in names:
            v = per_layer.get(layer)
            if isinstance(v, LayerClustering):
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
    table: SilhouetteTable | Mapping[str, Mapping[str, LayerClustering | float | None]],
    *,
    baseline: SilhouetteTable
    | Mapping[str, Mapping[str, LayerClustering | float | None]]
    | None = None,
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
    NAP baseline (``silhouette_table(..., kind="nap")``, DESIGN §1.9). Its groupings are
    drawn in the colour of the grouping of the same name (or the one their name contains)
    with hollow square markers, dotted (chance groupings dash-dotted), and labelled
    ``"<grouping> (<baseline_name>)"``; ``baseline_name`` defaults to the table's
    ``kind`` ("NAP"). With a baseline, the main table's labels say its kind too
    ("grapheme (GradNAP)"). The x axis holds the layers of both tables.
    """
    layers = _table_layers(table, *([] if baseline is None else [baseline]))
    if not layers:
        raise GradnapError("plot_silhouettes: the table holds no layer")
    fig, axs, owned = _axes(None if ax is None else [ax], 1, max(6.0, 0.55 * len(layers) + 2), 4.0)
    ax = axs[0]

    def is_chance(name: str) -> bool:
        if chance is not None:
            return name in chance
        return name.lower().startswith(("chance", "random"))

    def kind_name(t, default: str) -> str:
        kind = getattr(t, "kind", None)
        return default if kind is None else _KIND_NAMES.get(kind, kind)

    series = [(*_silhouette_series(table, layers), False)]
    if baseline is not None:
        series.append((*_silhouette_series(baseline, layers), True))
        main_name = kind_name(table, "")
        base_name = baseline_name or kind_name(baseline, "baseline")

    # one colour per real grouping; chance and baseline groupings take their owner's colour
    colours: dict[str, str] = {}
    n_col = 0
    for means, *_ in series:
        for g in means:
            if not is_chance(g) and g not in colours:
                colours[g] = f"C{n_col % 10}"
                n_col += 1
    for means, *_ in series:
        for g in means:
            if g in colours:
                continue
            owner = next((r for r in colours if r in g and not is_chance(r)), None)
            if owner is not None:
                colours[g] = colours[owner]
            else:
                colours[g] = "0.35" if n_col == 0 or g == "chance" else f"C{n_col % 10}"
                n_col += 1

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
    ax.set_xticks(x, layers, rotation=45, ha="right")
    ax.set_xlabel("layer")
    ax.set_ylabel("mean silhouette score")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, owned, title, caption, ax)


# --------------------------------------------------------------------------------------
# dendrogram


def plot_dendrogram(
    clustering: LayerClustering | Mapping[str, np.ndarray],
    percentile: float = CLUSTER_PERCENTILES[len(CLUSTER_PERCENTILES) // 2],
    *,
    layer: str | None = None,
    title: str | None = None,
    caption: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Dendrogram of one layer's groups, coloured by the clusters of the cut at ``percentile``.

    ``clustering``: a :class:`LayerClustering` or the layer's profiles ``{group: (C, W)}``
    (clustered here). The dashed line is the cut; links below it share their cluster's
    colour (the same clusters as :meth:`LayerClustering.cut`: merges of height ``<=`` the
    threshold), links above it are grey.
    """
    from scipy.cluster.hierarchy import dendrogram

    if not isinstance(clustering, LayerClustering):
        clustering = cluster_profiles(clustering, (percentile,), layer=layer or "")
    name = layer or clustering.layer
    n = clustering.n_groups
    fig, axs, owned = _axes(None if ax is None else [ax], 1, max(6.0, 0.22 * n + 2), 4.2)
    ax = axs[0]
    cut = clustering.cut(percentile)
    if n < 2:
        ax.text(0.5, 0.5, f"{n} group(s): nothing to cluster", ha="center", va="center")
        ax.set_axis_off()
    else:
        dendrogram(
            clustering.linkage,
            labels=list(clustering.groups),
            # fcluster keeps merges <= t, dendrogram colours links < color_threshold.
            color_threshold=float(np.nextafter(cut.threshold, np.inf)),
            above_threshold_color="0.55",
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
        title = f"Dendrogram of {name}" if name else "Dendrogram"
    return _finish(fig, owned, title, caption, ax)


# --------------------------------------------------------------------------------------
# saving


def save_figure(
    fig: Figure, path: str | Path, *, dpi: int = 110, caption: str | None = None
) -> Path:
    """Render ``fig`` headless (Agg) and write it atomically as PNG (or any format
    matplotlib knows from the suffix). The title and caption go into the PNG metadata."""
    from gradnap._version import __version__

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    meta_src = getattr(fig, "gradnap_meta", {})
    caption = caption or meta_src.get("caption")
    metadata: dict[str, str] | None = None
    if fmt == "png":
        metadata = {"Software": f"gradnap {__version__}"}
        if meta_src.get("title"):
            metadata["Title"] = str(meta_src["title"])
        if caption:
            metadata["Description"] = caption
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    atomic_write_bytes(path, buf.getvalue())
    log.debug("wrote %s", path)
    return path
