"""Silhouette curves, with chance levels and a NAP baseline (``gradnap.figures.silhouettes``)."""

import numpy as np
from matplotlib.colors import to_hex

from gradnap.analysis import silhouette_table
from gradnap.figures import plot_silhouettes, save_figure
from test_figures_save import assert_png


def test_silhouette_curves(tmp_path):
    rng = np.random.default_rng(1)
    layers = ["input", "layer1", "layer2", "layer3"]

    def groups(sep):
        centres = rng.normal(size=(3, 12))
        return {
            f"g{i}": (sep * centres[i % 3] + rng.normal(size=12)).reshape(3, 4) for i in range(9)
        }

    equidistant = {  # every cut gives one cluster: undefined
        n: np.array(p, dtype=float).reshape(1, 3)
        for n, p in zip("abcd", [[0, 0.5, 0], [0, -0.5, 0], [5, 0, 0.5], [5, 0, -0.5]], strict=True)
    }
    table = silhouette_table(
        {
            "grapheme": {layer: groups(i) for i, layer in enumerate(layers)},
            "phoneme": {**{layer: groups(2) for layer in layers}, "layer2": equidistant},
            "chance": {layer: groups(0) for layer in layers},
        }
    )
    fig = plot_silhouettes(table, caption="9 groups per layer")
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    phon = next(ln for label, ln in lines.items() if label.startswith("phoneme"))
    assert "1 layer(s) undefined" in phon.get_label()
    y = np.asarray(phon.get_ydata(), dtype=float)
    assert np.isnan(y[2]) and np.isfinite(y[[0, 1, 3]]).all()  # undefined point not drawn
    assert lines["chance"].get_linestyle() == "--"
    assert lines["grapheme"].get_linestyle() == "-"
    np.testing.assert_allclose(lines["grapheme"].get_ydata(), table.means("grapheme"))
    assert [t.get_text() for t in ax.get_xticklabels()] == layers
    assert_png(save_figure(fig, tmp_path / "sil.png"))
    # plain numbers work too
    fig2 = plot_silhouettes({"grapheme": {"a": 0.1, "b": None}, "random": {"a": 0.0, "b": 0.01}})
    assert_png(save_figure(fig2, tmp_path / "sil2.png"))


def test_silhouette_curves_with_nap_baseline(tmp_path):
    rng = np.random.default_rng(4)

    def groups(sep):
        centres = rng.normal(size=(3, 6))
        return {
            f"g{i}": (sep * centres[i % 3] + rng.normal(size=6)).reshape(2, 3) for i in range(9)
        }

    main = silhouette_table(
        {
            "grapheme": {"layer1": groups(3), "layer2": groups(1)},
            "phoneme": {"layer1": groups(1), "layer2": groups(2)},
            "chance_phoneme": {"layer1": groups(0), "layer2": groups(0)},
        }
    )
    naps = silhouette_table(
        {
            "grapheme": {"layer1": groups(2), "layer2": groups(2), "layer3": groups(4)},
            "chance_phoneme": {"layer1": groups(0), "layer2": groups(0), "layer3": groups(0)},
        },
        kind="nap",
    )
    fig = plot_silhouettes(main, baseline=naps, show_cuts=False)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["layer1", "layer2", "layer3"]
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    real, base = lines["grapheme (GradNAP)"], lines["grapheme (NAP)"]
    assert real.get_linestyle() == "-" and base.get_linestyle() == ":"
    assert to_hex(real.get_color()) == to_hex(base.get_color())  # same grouping, same colour
    np.testing.assert_allclose(base.get_ydata(), naps.means("grapheme"))
    assert np.isnan(real.get_ydata()[2])  # layer3 has no GradNAP score: a gap
    chance = lines["chance_phoneme (NAP)"]
    assert chance.get_linestyle() == "-."
    assert to_hex(chance.get_color()) == to_hex(lines["phoneme (GradNAP)"].get_color())
    assert lines["chance_phoneme (GradNAP)"].get_linestyle() == "--"
    assert_png(save_figure(fig, tmp_path / "sil_nap.png"))
    # a plain mapping as baseline, with its own name
    fig2 = plot_silhouettes(
        {"grapheme": {"a": 0.1}}, baseline={"grapheme": {"a": 0.3}}, baseline_name="NAvAI"
    )
    labels = [ln.get_label() for ln in fig2.axes[0].get_lines()]
    assert "grapheme (NAvAI)" in labels and "grapheme" in labels
