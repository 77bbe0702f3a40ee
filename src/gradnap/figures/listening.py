"""Where the model listens: the distribution of the listening offset (docs/method.md §1.5),
the input layer's alignment centre ``t*`` minus the receptive-field centre of the output
frame, in ms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from gradnap.errors import GradnapError
from gradnap.figures._style import finish, get_axes

if TYPE_CHECKING:  # pragma: no cover
    from gradnap.analysis.listening import ListeningSummary

__all__ = ["plot_listening_offsets"]


def plot_listening_offsets(
    offsets: Mapping[int, int],
    summary: ListeningSummary,
    *,
    bin_ms: int = 8,
    title: str | None = None,
    caption: str | None = None,
    ax=None,
) -> Figure:
    """Histogram of the listening offsets ``{offset ms: examples}`` (``Result.meta.
    listening_offsets``) in bins of ``bin_ms``, with the receptive-field centre (0) and the
    median of ``summary`` (:func:`gradnap.analysis.listening.listening_summary`) marked
    and its interquartile range shaded."""
    if not offsets:
        raise GradnapError("plot_listening_offsets: no offsets given")
    fig, (axis,), owned = get_axes(ax, 1, 6.0, 3.2)
    values = np.array(sorted(offsets), dtype=np.float64)
    counts = np.array([offsets[int(v)] for v in values], dtype=np.float64)
    edges = np.arange(
        np.floor(values.min() / bin_ms) * bin_ms, values.max() + bin_ms + 1e-9, bin_ms
    )
    hist, edges = np.histogram(values, bins=edges, weights=counts)
    share = hist / counts.sum()
    axis.bar(edges[:-1], share, width=bin_ms, align="edge", color="#4c72b0", edgecolor="white")
    axis.axvspan(summary.q25, summary.q75, color="#dd8452", alpha=0.15, label="interquartile range")
    axis.axvline(0.0, color="black", linewidth=1, label="receptive-field centre")
    axis.axvline(
        summary.median, color="#dd8452", linewidth=2, label=f"median {summary.median:+.0f} ms"
    )
    axis.set_xlabel("input alignment t* − receptive-field centre (ms)")
    axis.set_ylabel("share of examples")
    axis.legend(fontsize=8, loc="upper left")
    return finish(fig, owned, title, caption, axis)
