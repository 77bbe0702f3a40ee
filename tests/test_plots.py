import struct

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image

from gradnap.analysis.clustering import cluster_profiles, silhouette_table
from gradnap.analysis.optimal_input import optimal_input_for_profile
from gradnap.asr.model import ModelConfig, Wav2Letter
from gradnap.errors import GradnapError
from gradnap.features import mel_frequencies
from gradnap.figures.plots import (
    plot_action_potentials,
    plot_dendrogram,
    plot_input_gradnap,
    plot_input_gradnaps,
    plot_naps,
    plot_silhouettes,
    save_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)
FREQS = mel_frequencies()
W0 = 25
TIMES = (np.arange(W0) - 12) * 8.0


def assert_png(path, min_side=200):
    """A PNG file of plausible size; returns its (width, height)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width >= min_side and height >= min_side
    assert len(data) > 5000
    return width, height


def input_profile(scale=1.0):
    return scale * RNG.normal(size=(128, W0))


def test_input_gradnap_with_navai(tmp_path):
    g, nv = input_profile(), input_profile(5.0)
    g[10, 3] = 7.0  # asymmetric extreme
    fig = plot_input_gradnap(
        g, nv, times_ms=TIMES, freqs=FREQS, group="AE", caption="AE, 123 examples"
    )
    assert isinstance(fig, Figure)
    heat, nav_heat = fig.axes[0], fig.axes[1]
    assert heat.images[0].get_clim() == (-7.0, 7.0)  # symmetric around 0
    lo, hi = nav_heat.images[0].get_clim()
    assert lo == -hi == -np.abs(nv).max()
    labels = [t.get_text() for t in heat.get_yticklabels()]
    assert "1000" in labels and "4000" in labels
    # the 1000 Hz tick sits where the mel-bin centres pass 1000 Hz
    pos = heat.get_yticks()[labels.index("1000")]
    assert FREQS[int(np.floor(pos))] <= 1000 <= FREQS[int(np.ceil(pos))]
    extent = heat.images[0].get_extent()
    assert extent[0] < TIMES[0] and extent[1] > TIMES[-1]
    path = save_figure(fig, tmp_path / "input.png")
    assert_png(path)
    info = Image.open(path).info
    assert info["Description"] == "AE, 123 examples"
    assert "AE" in info["Title"]


def test_input_gradnap_grid_and_errors(tmp_path):
    groups = ["AA", "AE", "IY"]
    fig = plot_input_gradnaps(
        {g: input_profile() for g in groups},
        {g: input_profile() for g in groups},
        times_ms=TIMES,
        freqs=FREQS,
        caption="three phonemes",
    )
    assert len(fig.axes) == 2 * 3 + 2 * 3  # heatmaps and colorbars
    assert_png(save_figure(fig, tmp_path / "grid.png"))
    with pytest.raises(GradnapError, match="IY"):
        plot_input_gradnaps({"IY": input_profile()}, {})
    with pytest.raises(GradnapError):
        plot_input_gradnap(input_profile(), times_ms=TIMES[:-1], freqs=FREQS)


def test_action_potentials_with_optimal_input(tmp_path):
    torch.manual_seed(0)
    model = Wav2Letter(ModelConfig("tiny", (6,) * 8 + (8, 8, 29), n_features=16))
    profile = 0.1 * RNG.normal(size=(6, 31))
    profile[4] += 3.0
    opt = optimal_input_for_profile(model, "layer2", profile, k=3)
    fig = plot_action_potentials(
        profile,
        times_ms=(np.arange(31) - 15) * 16.0,
        k=3,
        optimal=opt,
        freqs=np.linspace(100, 7000, 16),
        layer="layer2",
        group="t",
        caption="layer 2, grapheme t",
    )
    ax = fig.axes[0]
    coloured = [ln for ln in ax.get_lines() if ln.get_label().startswith("neuron")]
    assert [ln.get_label().split()[1] for ln in coloured] == ["4", *map(str, opt.neurons[1:])]
    assert len({to_hex(ln.get_color()) for ln in coloured}) == 3
    grey = [ln for ln in ax.get_lines() if to_hex(ln.get_color()) == to_hex("0.72")]
    assert len(grey) >= 3  # the 3 other neurons (and the legend entry)
    assert fig.axes[1].images[0].get_array().shape == opt.x.shape
    assert_png(save_figure(fig, tmp_path / "ap.png"))
    # into given axes, and without optimal input
    host = Figure()
    given = host.subplots()
    assert plot_action_potentials(profile, axes=given, title="mine") is host
    assert given.get_title() != ""


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


def test_nap_heatmaps_share_a_symmetric_scale(tmp_path):
    rng = np.random.default_rng(3)
    naps = {g: rng.normal(size=(6, 10)) for g in ("AA", "T", "IY")}
    naps["T"][2, 0] = -9.0  # the extreme of all panels, negative
    fig = plot_naps(naps, layer="layer2", caption="3 phonemes")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 + 1  # three heatmaps, one shared colour bar
    heat = fig.axes[:3]
    assert [ax.get_title() for ax in heat] == ["AA", "T", "IY"]
    for ax, g in zip(heat, naps, strict=True):
        im = ax.images[0]
        assert im.get_clim() == (-9.0, 9.0)  # centred on 0, one scale for all
        assert im.get_cmap().name == "RdBu_r"
        np.testing.assert_array_equal(im.get_array(), naps[g])  # neurons × ranks, unsorted rows
        assert im.get_extent() == [0.5, 10.5, -0.5, 5.5]  # ranks 1..W, neurons 0..C-1
    assert heat[0].get_ylabel() == "layer2 neuron"
    assert "rank" in heat[0].get_xlabel()
    assert fig.gradnap_meta == {"title": "NAPs of layer2", "caption": "3 phonemes"}
    assert_png(save_figure(fig, tmp_path / "naps.png"))
    # own limits per panel: one colour bar each
    fig2 = plot_naps(naps, shared_limits=False)
    assert len(fig2.axes) == 3 + 3
    lo, hi = fig2.axes[0].images[0].get_clim()
    assert lo == -hi == -np.abs(naps["AA"]).max()
    # into given axes
    host = Figure()
    given = host.subplots(1, 2)
    assert plot_naps({"a": naps["AA"], "b": naps["T"]}, axes=given) is host
    with pytest.raises(GradnapError, match="expected 3 axes"):
        plot_naps(naps, axes=given)
    with pytest.raises(GradnapError, match="shape"):
        plot_naps({"a": np.zeros((6, 10)), "b": np.zeros((6, 9))})
    with pytest.raises(GradnapError, match="no groups"):
        plot_naps({})


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


def test_dendrogram_colours_the_clusters_of_the_cut(tmp_path):
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(3, 8)) * 6
    profiles = {f"g{i}": (centres[i % 3] + rng.normal(size=8)).reshape(2, 4) for i in range(12)}
    clustering = cluster_profiles(profiles, layer="layer9")
    # a percentile whose threshold is exactly a merge height (merged by the cut: <=)
    d = np.sort(clustering.distances)
    rank = int(np.flatnonzero(d == clustering.linkage[-3, 2])[0])
    on_merge = 100.0 * rank / (len(d) - 1)
    assert clustering.cut(on_merge).threshold == clustering.linkage[-3, 2]
    for pct in (75.0, 95.0, 30.0, on_merge):
        cut = clustering.cut(pct)
        fig = plot_dendrogram(clustering, pct, caption="12 groups")
        ax = fig.axes[0]
        grey = to_hex("0.55")
        colours = {to_hex(c) for coll in ax.collections for c in coll.get_colors()}
        non_singletons = sum(np.bincount(cut.labels)[1:] > 1)
        assert len(colours - {grey}) == min(non_singletons, 9)  # scipy cycles 9 colours
        # one drawn link per merge: the merges above the cut are grey, the rest coloured
        n_grey = sum(
            len(coll.get_segments())
            for coll in ax.collections
            if {to_hex(x) for x in coll.get_colors()} == {grey}
        )
        assert n_grey == cut.n_clusters - 1
        assert ax.get_lines()[-1].get_ydata()[0] == pytest.approx(cut.threshold)
        assert f"{cut.n_clusters} clusters" in ax.get_title()
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            clustering.groups[i] for i in _leaves(clustering)
        ]
    assert_png(save_figure(fig, tmp_path / "dend.png"))
    # straight from profiles, and a degenerate layer
    assert_png(save_figure(plot_dendrogram(profiles, 90, layer="x"), tmp_path / "d2.png"))
    assert_png(save_figure(plot_dendrogram({"only": np.zeros((1, 2))}), tmp_path / "d3.png"))


def _leaves(clustering):
    from scipy.cluster.hierarchy import dendrogram

    return dendrogram(clustering.linkage, no_plot=True)["leaves"]
