"""NAP heatmaps: the baseline profiles (docs/method.md §1.9) of a few groups of one layer."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from gradnap.errors import GradnapError
from gradnap.figures._style import CMAP, finish, get_axes, symmetric_limit

__all__ = ["plot_naps"]


def plot_naps(
    naps: Mapping[str, np.ndarray],
    *,
    layer: str = "",
    shared_limits: bool = True,
    ranks: int | None = None,
    clip_percentile: float | None = 99.0,
    title: str | None = None,
    caption: str | None = None,
    axes=None,
) -> Figure:
    """NAPs of a few groups of one layer as heatmaps, one panel per group
    (docs/method.md §1.9).

    ``naps``: group -> ``(C, W)`` NAP (``Result.profile(layer, group, grouping,
    kind="nap")``): neurons × rank, rank 1 = each neuron's largest activation in the
    aligned window (columns are ranks, not time). All groups must have the same shape.
    Rows keep the neuron order, so panels compare neuron by neuron. Diverging colour map
    centred on 0 with symmetric limits: with ``shared_limits`` (default) one limit
    ``max |NAP|`` over all panels and one colour bar, so groups compare on one scale;
    otherwise each panel has its own limit and colour bar.

    Most of a NAP sits in its first ranks (ReLU activations sorted in descending order
    end in zeros) and a few neurons dominate a linear scale, so by default the panels
    show ranks ``1 .. ranks`` (``None``: up to the last rank at which any group's
    ``|NAP|`` reaches 5% of its largest value) and the colour limit is the
    ``clip_percentile`` percentile of ``|NAP|`` over the ranks shown (stronger values
    saturate; ``None``: the maximum). The colour bar says which. ``axes``: ``len(naps)``
    axes.
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
    if ranks is None:
        peak = np.abs(np.stack(arrays)).max(axis=(0, 1))  # (W,) per rank
        shown = np.flatnonzero(peak >= 0.05 * peak.max()) if peak.max() > 0 else [w - 1]
        ranks = int(min(w, max(shown[-1] + 1, 8)))
    w = int(min(max(ranks, 1), w))
    arrays = [a[:, :w] for a in arrays]
    fig, axs, owned = get_axes(axes, len(groups), 2.6 * len(groups) + 1.4, 3.8)

    def limit(data: np.ndarray) -> float:
        if clip_percentile is None:
            return symmetric_limit(data)
        a = np.abs(data[np.isfinite(data)])
        q = float(np.percentile(a, clip_percentile)) if a.size else 0.0
        return q if q > 0 else symmetric_limit(data)

    shared = limit(np.stack(arrays)) if shared_limits else None
    label = "NAP (mean sorted activation − dataset mean) / std"
    if clip_percentile is not None:
        label += f"\ncolours saturate at the {clip_percentile:g}th percentile of |NAP|"
    images = []
    for i, (ax, g, a) in enumerate(zip(axs, groups, arrays, strict=True)):
        lim = shared if shared is not None else limit(a)
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
        ax.set_xlabel(f"rank (1 = largest; ranks 1–{w} shown)")
        if i == 0:
            ax.set_ylabel(f"{layer} neuron".strip())
        if shared is None:
            fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    if shared is not None:
        fig.colorbar(images[-1], ax=axs, label=label, shrink=0.9)
    if title is None:
        title = f"NAPs of {layer}" if layer else "NAPs"
    return finish(fig, owned, title, caption, axs[0])
