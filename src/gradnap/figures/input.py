"""Input-layer GradNAPs (paper Fig. 2): spectrogram heatmaps, the NAvAI beside each; for
waveform models, the input spectrum's panels (docs/method.md §1.10).

Inputs are plain arrays: profiles ``(F, W_0)`` (mel bins × window positions), window
offsets in ms ``(W_0,)``, mel-bin centre frequencies in Hz ``(F,)``
(:func:`gradnap.features.mel_frequencies`); for a waveform's spectrum, ``(F, T_s)``
(linear frequency bins × analysis frames) with the bins' frequencies and the frames'
offsets in ms.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from gradnap.errors import GradnapError
from gradnap.figures._style import finish, frequency_axis, get_axes, heatmap, new_figure, time_axis

__all__ = ["plot_input_gradnap", "plot_input_gradnaps", "plot_input_spectra"]


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
    fig, axs, owned = get_axes(axes, len(panels), 5.2 * len(panels), 3.8)
    t, tlabel = time_axis(times_ms, g.shape[1])
    f = frequency_axis(freqs, g.shape[0])
    for ax, (name, data) in zip(axs, panels, strict=True):
        heatmap(ax, data, t, f, "", fig)  # the panel's title names the quantity
        ax.axvline(0.0, color="k", lw=0.6, ls=":", alpha=0.4)
        ax.set_xlabel(tlabel)
        ax.set_title(f"{name} {group}".strip(), fontsize=10)
    if title is None:
        title = f"Input layer, group {group}" if group else "Input layer"
    return finish(fig, owned, title, caption, axs[0])


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
        fig = new_figure(5.2 * ncols, 2.9 * len(groups))
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
    return finish(fig, owned, title, caption, grid[0, 0])


def _linear_ticks(f: np.ndarray) -> list[float]:
    """Round frequencies (Hz) for a linear axis up to ``f[-1]``: every 1 kHz (500 Hz
    below 3 kHz)."""
    step = 1000.0 if f[-1] >= 3000 else 500.0
    return list(np.arange(0.0, f[-1] + 1.0, step))


def plot_input_spectra(
    rows: Mapping[str, Mapping[str, np.ndarray]],
    *,
    times_ms,
    freqs,
    units: Mapping[str, str] | None = None,
    title: str | None = "Input spectrum",
    caption: str | None = None,
    axes=None,
) -> Figure:
    """The input spectrum of a waveform model (docs/method.md §1.10): one row per group,
    one heatmap per panel.

    ``rows``: group -> {panel title: ``(F, T_s)``}, the same panels in every row (e.g.
    the sensitivity power in dB against the dataset, the GradNAP, the input power in dB
    against the dataset); ``times_ms`` ``(T_s,)`` frame offsets from ``t*`` in ms;
    ``freqs`` ``(F,)`` bin frequencies in Hz (a linear axis, ticked every kHz);
    ``units``: panel title -> colour-bar label. Every panel has its own symmetric colour
    limits, centred on 0. ``axes``: ``(rows, panels)`` array of axes.
    """
    if not rows:
        raise GradnapError("plot_input_spectra: no groups given")
    groups = list(rows)
    panels = list(rows[groups[0]])
    for g in groups:
        if list(rows[g]) != panels:
            raise GradnapError(
                f"plot_input_spectra: group {g!r} has panels {list(rows[g])}, not {panels}"
            )
    units = dict(units or {})
    if axes is None:
        fig = new_figure(4.6 * len(panels), 2.9 * len(groups))
        grid = fig.subplots(len(groups), len(panels), squeeze=False)
        owned = True
    else:
        grid = np.asarray(axes, dtype=object).reshape(len(groups), len(panels))
        fig, owned = grid[0, 0].figure, False
    first = np.asarray(rows[groups[0]][panels[0]])
    if first.ndim != 2:
        raise GradnapError(f"plot_input_spectra: expected (F, T) arrays, got shape {first.shape}")
    t, tlabel = time_axis(times_ms, first.shape[1])
    f = np.asarray(freqs, dtype=np.float64).reshape(-1)
    if f.shape != (first.shape[0],):
        raise GradnapError(f"freqs has {f.size} entries for {first.shape[0]} frequency bins")
    ticks = _linear_ticks(f)
    for i, group in enumerate(groups):
        for ax, name in zip(grid[i], panels, strict=True):
            data = np.asarray(rows[group][name], dtype=np.float64)
            if data.shape != first.shape:
                raise GradnapError(f"{group} {name}: shape {data.shape}, expected {first.shape}")
            heatmap(ax, data, t, f, units.get(name, ""), fig, ticks=ticks)
            ax.axvline(0.0, color="k", lw=0.6, ls=":", alpha=0.4)
            ax.set_title(f"{name}, {group}", fontsize=9)
            ax.set_xlabel(tlabel if i == len(groups) - 1 else "")
    return finish(fig, owned, title, caption, grid[0, 0])
