"""The paper's figures, drawing only: every function takes ``ax=None`` (or axes) and
returns the figure; nothing here computes an analysis or calls ``plt.show()``."""

from gradnap.figures.plots import (
    plot_action_potentials,
    plot_dendrogram,
    plot_input_gradnap,
    plot_input_gradnaps,
    plot_naps,
    plot_silhouettes,
    save_figure,
)

__all__ = [
    "plot_action_potentials",
    "plot_dendrogram",
    "plot_input_gradnap",
    "plot_input_gradnaps",
    "plot_naps",
    "plot_silhouettes",
    "save_figure",
]
