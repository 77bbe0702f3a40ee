"""What every figure shares: the colour map, new figures and axes, captions, the
spectrogram heatmap and its time and frequency axes.

New figures are plain :class:`~matplotlib.figure.Figure` objects on an Agg canvas;
pyplot is never imported, so nothing needs a display and no global figure state is kept.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gradnap.errors import GradnapError

#: Diverging colour map of all heatmaps (blue negative, red positive, white 0).
CMAP = "RdBu_r"
#: Frequencies (Hz) labelled on mel axes, where inside the range.
HZ_TICKS = (250, 500, 1000, 2000, 3000, 4000, 6000)
TIME_LABEL = "time relative to alignment (ms)"


def is_chance_name(name: str, chance=None) -> bool:
    """Whether grouping ``name`` is a random-label one: in ``chance`` when given, else its
    name starts with ``chance`` or ``random``."""
    if chance is not None:
        return name in chance
    return name.lower().startswith(("chance", "random"))


def grouping_colours(names, chance=None) -> dict[str, str]:
    """One colour per grouping of ``names`` (first-seen order): real groupings take
    ``C0``, ``C1``, …; a random-label grouping (:func:`is_chance_name`) takes the colour of
    the real grouping its name contains (``chance_phoneme`` that of ``phoneme``), else one
    of its own (grey for the first, or for ``chance``)."""
    names = list(dict.fromkeys(names))
    colours: dict[str, str] = {}
    n_col = 0
    for g in names:
        if not is_chance_name(g, chance):
            colours[g] = f"C{n_col % 10}"
            n_col += 1
    for g in names:
        if g in colours:
            continue
        owner = next((r for r in colours if r in g and not is_chance_name(r, chance)), None)
        if owner is not None:
            colours[g] = colours[owner]
        else:
            colours[g] = "0.35" if n_col == 0 or g == "chance" else f"C{n_col % 10}"
            n_col += 1
    return colours


def new_figure(width: float, height: float) -> Figure:
    """An empty figure (inches) with constrained layout, rendered by the Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def get_axes(axes, n: int, width: float, height: float, **kw) -> tuple[Figure, list[Axes], bool]:
    """``(figure, n axes, owned)``: ``axes`` (one axes or a sequence of ``n``) and their
    figure, or, for ``axes=None``, a new ``width`` × ``height`` figure with one row of ``n``
    axes (``owned``: the figure was made here)."""
    if axes is None:
        fig = new_figure(width, height)
        made = fig.subplots(1, n, squeeze=False, **kw)[0]
        return fig, list(made), True
    if isinstance(axes, Axes):
        axes = [axes]
    axes = list(axes)
    if len(axes) != n:
        raise GradnapError(f"expected {n} axes, got {len(axes)}")
    return axes[0].figure, axes, False


def finish(fig: Figure, owned: bool, title: str | None, caption: str | None, ax: Axes) -> Figure:
    """Title, caption and metadata of a figure.

    On a figure made by the plot function (``owned``) the title is the figure's title and
    the caption its bottom line; in given axes the title goes to ``ax`` (unless it has
    one) and the caption under it. Both are kept in ``fig.gradnap_meta``, which
    :func:`gradnap.figures.save_figure` writes into the PNG metadata.
    """
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


def time_axis(times_ms, n: int) -> tuple[np.ndarray, str]:
    """Window offsets ``(n,)`` in ms and the axis label; ``None``: positions centred on 0."""
    if times_ms is None:
        return np.arange(n) - (n - 1) / 2.0, "position relative to alignment"
    t = np.asarray(times_ms, dtype=np.float64).reshape(-1)
    if t.shape != (n,):
        raise GradnapError(f"times_ms has {t.size} entries for {n} window positions")
    return t, TIME_LABEL


def frequency_axis(freqs, n: int) -> np.ndarray:
    """Mel-bin centres ``(n,)`` in Hz; ``None``: :func:`gradnap.features.mel_frequencies`."""
    if freqs is None:
        from gradnap.features import mel_frequencies

        freqs = mel_frequencies()
    f = np.asarray(freqs, dtype=np.float64).reshape(-1)
    if f.shape != (n,):
        raise GradnapError(f"freqs has {f.size} entries for {n} frequency bins")
    return f


def symmetric_limit(a: np.ndarray) -> float:
    """``max |a|`` over the finite entries (1 when that is 0 or there are none)."""
    m = float(np.nanmax(np.abs(a))) if a.size and np.isfinite(a).any() else 0.0
    return m if m > 0 else 1.0


def heatmap(
    ax: Axes,
    data: np.ndarray,
    t: np.ndarray,
    f: np.ndarray,
    label: str,
    fig: Figure,
    ticks=HZ_TICKS,
):
    """Spectrogram-like heatmap ``data`` ``(F, W)``: time ``t`` (ms) × frequency bins
    labelled in Hz (``ticks``, where inside the range) at the bin frequencies ``f``,
    :data:`CMAP` with symmetric limits, and a colour bar."""
    lim = symmetric_limit(data)
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
    ticks = [hz for hz in ticks if f[0] <= hz <= f[-1]]
    ax.set_yticks(np.interp(ticks, f, np.arange(len(f))), [f"{hz:g}" for hz in ticks])
    ax.set_ylabel("frequency (Hz)")
    fig.colorbar(im, ax=ax, label=label or None, shrink=0.9)
    return im


def layer_axis(ax: Axes, x: np.ndarray, layers, ylabel: str) -> None:
    """The layer axis of a per-layer figure: layer names at ``x``, ``ylabel``, a grid,
    and the legend outside the axes on the right (inside it covers some layers' points)."""
    ax.set_xticks(x, layers, rotation=45, ha="right")
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
