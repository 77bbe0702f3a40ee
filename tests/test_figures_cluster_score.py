"""The cross-validated cluster score per layer with error bars (``gradnap.figures.cluster_score``)."""

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer

from gradnap.analysis.crossval import ClusterScore, ClusterScoreTable
from gradnap.errors import GradnapError
from gradnap.figures import plot_cluster_scores, save_figure
from gradnap.figures._style import new_figure
from test_figures_save import assert_png

LAYERS = ["input", "layer1", "layer2", "layer3"]


def _score(score, se):
    return ClusterScore(score, se, (), (), 10, 5, ())


def _bars(ax) -> dict[str, ErrorbarContainer]:
    return {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}


def _half_heights(container) -> np.ndarray:
    """Half the length of every drawn vertical error bar of a container, in plot order."""
    (segments,) = container.lines[2]
    return np.array([abs(s[1, 1] - s[0, 1]) / 2 for s in segments.get_segments() if s.size])


def test_scores_with_error_bars_zero_line_and_chance(tmp_path):
    table = ClusterScoreTable(
        {
            "grapheme": {la: _score(0.1 * i, 0.02) for i, la in enumerate(LAYERS)},
            "phoneme": {la: _score(0.3, 0.05) for la in LAYERS},
            "chance_phoneme": {la: _score(0.01, 0.03) for la in LAYERS},
        },
        {g: dict.fromkeys(LAYERS, 0.5) for g in ("grapheme", "phoneme", "chance_phoneme")},
    )
    fig = plot_cluster_scores(table, caption="four layers")
    ax = fig.axes[0]
    bars = _bars(ax)
    assert set(bars) == {"grapheme (±2 SE)", "phoneme (±2 SE)", "chance_phoneme (±2 SE)"}
    graph = bars["grapheme (±2 SE)"]
    x, y = (np.asarray(a, dtype=float) for a in graph.lines[0].get_data())
    np.testing.assert_allclose(y, [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(_half_heights(graph), 0.04)  # 2 SE each side
    np.testing.assert_allclose(_half_heights(bars["phoneme (±2 SE)"]), 0.10)
    # side by side around the layer's tick, in the order of the table
    xp = np.asarray(bars["phoneme (±2 SE)"].lines[0].get_xdata(), dtype=float)
    assert (x < xp).all() and np.allclose(np.round(xp), np.arange(4))
    chance = bars["chance_phoneme (±2 SE)"].lines[0]
    assert chance.get_linestyle() == "--" and graph.lines[0].get_linestyle() == "-"
    assert to_hex(chance.get_color()) == to_hex(bars["phoneme (±2 SE)"].lines[0].get_color())
    assert any(
        np.allclose(ln.get_ydata(), 0) and ln.get_label().startswith("_") for ln in ax.get_lines()
    )  # the zero line
    assert [t.get_text() for t in ax.get_xticklabels()] == LAYERS
    assert fig.gradnap_meta["caption"] == "four layers"
    assert_png(save_figure(fig, tmp_path / "scores.png"))


def test_plain_mapping_undefined_values_sigmas_and_given_axes():
    fig = new_figure(5, 3)
    ax = fig.add_subplot()
    out = plot_cluster_scores(
        {"grapheme": {"a": (0.2, 0.1), "b": (0.1, float("nan")), "c": (float("nan"), 0.1)}},
        sigmas=1,
        ax=ax,
    )
    assert out is fig
    (bar,) = _bars(ax).values()
    assert bar.get_label() == "grapheme (±1 SE), 1 layer(s) without SE"
    y = np.asarray(bar.lines[0].get_ydata(), dtype=float)
    assert np.isnan(y[2]) and np.isfinite(y[:2]).all()
    np.testing.assert_allclose(_half_heights(bar), [0.1])  # only the finite bar is drawn
    with pytest.raises(GradnapError, match="no layer"):
        plot_cluster_scores({"grapheme": {}})
    with pytest.raises(GradnapError, match="sigmas"):
        plot_cluster_scores({"grapheme": {"a": (0.1, 0.1)}}, sigmas=0)
