"""The paper's figures, drawing only: every function takes ``ax=None`` (or ``axes``) and
returns the figure; nothing here computes an analysis or calls ``plt.show()``.

- :mod:`~gradnap.figures.input` — input-layer GradNAP and NAvAI heatmaps (Fig. 2), and
  a waveform model's input spectrum;
- :mod:`~gradnap.figures.action` — action potentials and the optimal input (Fig. 3);
- :mod:`~gradnap.figures.silhouettes` — silhouette scores per layer (Fig. 4);
- :mod:`~gradnap.figures.cluster_score` — the cross-validated cluster score per layer
  with error bars (docs/method.md §6);
- :mod:`~gradnap.figures.dendrogram` — the dendrogram of one layer, coloured by one cut;
- :mod:`~gradnap.figures.naps` — NAP heatmaps (the baseline);
- :mod:`~gradnap.figures.listening` — where the model listens (listening offsets);
- :mod:`~gradnap.figures.save` — rendering headless (Agg) and writing PNGs;
- :mod:`~gradnap.figures._style` — what they share (colour map, axes, captions, heatmap).

Every function draws into the axes it is given (``ax=None`` / ``axes=None``: a new
figure on an Agg canvas; pyplot is never imported) and returns the
:class:`matplotlib.figure.Figure`. Every function takes ``title`` and ``caption`` (one
line on what was computed and on how many examples): the caption is written under a
figure the function created (under the axes otherwise) and kept in
``fig.gradnap_meta``; :func:`save_figure` writes it into the PNG's metadata.

Inputs are plain arrays and the results of :mod:`gradnap.analysis` (which neurons to
highlight, clusterings, silhouette tables, optimal inputs): the caller computes them.
"""

from gradnap.figures.action import plot_action_potentials
from gradnap.figures.cluster_score import plot_cluster_scores
from gradnap.figures.dendrogram import plot_dendrogram
from gradnap.figures.input import plot_input_gradnap, plot_input_gradnaps, plot_input_spectra
from gradnap.figures.listening import plot_listening_offsets
from gradnap.figures.naps import plot_naps
from gradnap.figures.save import figure_bytes, save_figure
from gradnap.figures.silhouettes import plot_silhouettes

__all__ = [
    "figure_bytes",
    "plot_action_potentials",
    "plot_cluster_scores",
    "plot_dendrogram",
    "plot_input_gradnap",
    "plot_input_gradnaps",
    "plot_input_spectra",
    "plot_listening_offsets",
    "plot_naps",
    "plot_silhouettes",
    "save_figure",
]
