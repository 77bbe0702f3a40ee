"""Action potentials (paper Fig. 3): every neuron of a layer's GradNAP over window time,
the neurons it is given highlighted, and the optimal input beside them.

Which neurons are highlighted and their responsiveness are the caller's
(:func:`gradnap.analysis.top_neurons`, :func:`gradnap.analysis.responsiveness`,
docs/method.md §1.6); the optimal input is :func:`gradnap.analysis.optimal_input_for_profile`
(§1.7). This module only draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from gradnap.defaults import FEATURES
from gradnap.errors import GradnapError
from gradnap.figures._style import finish, frequency_axis, get_axes, heatmap, time_axis

if TYPE_CHECKING:  # pragma: no cover
    from gradnap.analysis.optimal_input import OptimalInput

__all__ = ["plot_action_potentials"]

#: Colour of the neurons that are not highlighted.
OTHER_COLOUR = "0.72"


def _neurons(top: Sequence[int] | np.ndarray, n: int) -> list[int]:
    neurons = [int(i) for i in np.asarray(top, dtype=np.int64).reshape(-1)]
    bad = [i for i in neurons if not 0 <= i < n]
    if bad:
        raise GradnapError(f"top: neuron(s) {bad} outside the profile's {n} neurons")
    if len(set(neurons)) != len(neurons):
        raise GradnapError(f"top: neurons repeated in {neurons}")
    return neurons


def plot_action_potentials(
    profile,
    *,
    top: Sequence[int] | np.ndarray = (),
    r=None,
    times_ms=None,
    optimal: OptimalInput | np.ndarray | None = None,
    freqs=None,
    group: str = "",
    layer: str = "",
    title: str | None = None,
    caption: str | None = None,
    axes=None,
) -> Figure:
    """All neurons of a layer's GradNAP as lines over window time, the ``top`` ones coloured.

    ``profile``: ``(C, W)``; ``times_ms`` ``(W,)``. ``top``: the neurons to highlight, in
    legend order (e.g. :func:`gradnap.analysis.top_neurons`); they are coloured, the rest
    grey. ``r``: responsiveness of every neuron ``(C,)``
    (:func:`gradnap.analysis.responsiveness`), written beside each highlighted neuron in
    the legend. ``optimal`` (an :class:`~gradnap.analysis.OptimalInput` or an array
    ``(F, RF)``) is drawn beside them as a spectrogram, time relative to the centre of the
    receptive field. ``axes``: one axes, or two with ``optimal``.
    """
    p = np.asarray(profile, dtype=np.float64)
    if p.ndim != 2:
        raise GradnapError(f"profile: expected (C, W), got shape {p.shape}")
    neurons = _neurons(top, p.shape[0])
    if r is not None:
        r = np.asarray(r, dtype=np.float64)
        if r.shape != (p.shape[0],):
            raise GradnapError(f"r has shape {r.shape}, expected ({p.shape[0]},): one per neuron")
    fig, axs, owned = get_axes(
        axes, 1 if optimal is None else 2, 11.0 if optimal is not None else 6.0, 4.0
    )
    ax = axs[0]
    t, tlabel = time_axis(times_ms, p.shape[1])
    rest = np.setdiff1d(np.arange(p.shape[0]), neurons)
    if rest.size:
        ax.plot(t, p[rest].T, color=OTHER_COLOUR, lw=0.6, alpha=0.8)
        ax.plot([], [], color=OTHER_COLOUR, lw=0.6, label=f"other {rest.size} neurons")
    for i, n in enumerate(neurons):
        label = f"neuron {n}" if r is None else f"neuron {n} (r={r[n]:+.3g})"
        ax.plot(t, p[n], color=f"C{i % 10}", lw=1.8, label=label)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.axvline(0.0, color="k", lw=0.5, ls=":")
    ax.set_xlabel(tlabel)
    ax.set_ylabel("GradNAP")
    ax.set_xlim(t[0], t[-1])
    ax.legend(
        fontsize=7,
        loc="best",
        framealpha=0.8,
        title=None if r is None else "r = responsiveness (docs/method.md §1.6)",
        title_fontsize=7,
    )
    head = " ".join(s for s in (layer, group) if s)
    what = f"all {p.shape[0]} neurons, top {len(neurons)} coloured"
    ax.set_title(f"{head}: {what}" if head else what, fontsize=10)
    if optimal is not None:
        _draw_optimal(axs[1], optimal, freqs, fig)
    if title is None:
        title = (
            f"Action potentials, {layer}, group {group}" if group else f"Action potentials {layer}"
        )
    return finish(fig, owned, title.strip(), caption, ax)


def _draw_optimal(ax, optimal, freqs, fig: Figure) -> None:
    """The optimal input as a spectrogram: an :class:`OptimalInput` (its frame times and
    neurons) or an array ``(F, RF)`` (frames of the default feature hop)."""
    if hasattr(optimal, "x") and hasattr(optimal, "neurons"):
        x, ot = np.asarray(optimal.x, dtype=np.float64), optimal.times_ms
        neurons = ", ".join(str(int(n)) for n in optimal.neurons)
        ax.set_title(f"one optimal input driving neurons {neurons} together", fontsize=10)
    else:
        x = np.asarray(optimal, dtype=np.float64)
        if x.ndim != 2:
            raise GradnapError(f"optimal: expected (F, RF), got shape {x.shape}")
        ot = (np.arange(x.shape[1]) - (x.shape[1] - 1) / 2) * FEATURES.frame_seconds * 1000
        ax.set_title("optimal input", fontsize=10)
    heatmap(ax, x, ot, frequency_axis(freqs, x.shape[0]), "input (z-normalised log-mel)", fig)
    ax.set_xlabel("time relative to receptive-field centre (ms)")
