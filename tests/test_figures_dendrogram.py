"""The dendrogram of one layer and one cut (``gradnap.figures.dendrogram``)."""

from dataclasses import replace

import numpy as np
import pytest
from matplotlib.colors import to_hex

from gradnap.analysis import cluster_profiles
from gradnap.errors import GradnapError
from gradnap.figures import plot_dendrogram, save_figure
from test_figures_save import assert_png


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
    # a clustering at one percentile only, and a degenerate layer
    fig = plot_dendrogram(cluster_profiles(profiles, (90,), layer="x"), 90)
    assert_png(save_figure(fig, tmp_path / "d2.png"))
    fig = plot_dendrogram(cluster_profiles({"only": np.zeros((1, 2))}))
    assert_png(save_figure(fig, tmp_path / "d3.png"))


def test_dendrogram_draws_the_clustering_it_is_given():
    rng = np.random.default_rng(5)
    profiles = {f"g{i}": rng.normal(size=(2, 3)) for i in range(8)}
    clustering = cluster_profiles(profiles, (75.0, 90.0), layer="layer4")
    # a cut the clustering holds is drawn as held: nothing is recomputed
    held = replace(clustering.cuts[1], silhouette=0.4242, n_clusters=99, reason="")
    given = replace(clustering, cuts=(clustering.cuts[0], held))
    ax = plot_dendrogram(given, 90.0).axes[0]
    assert "99 clusters, silhouette 0.424" in ax.get_title()
    assert ax.get_lines()[-1].get_ydata()[0] == held.threshold
    assert [t.get_text() for t in ax.get_xticklabels()] == [given.groups[i] for i in _leaves(given)]
    assert ax.figure.gradnap_meta["title"] == "Dendrogram in layer4"
    # another percentile: the clustering's own cut there
    ax = plot_dendrogram(given, 50.0, layer="shown").axes[0]
    assert f"{clustering.cut(50.0).n_clusters} clusters" in ax.get_title()
    assert ax.figure.gradnap_meta["title"] == "Dendrogram in shown"
    fig = plot_dendrogram(given, 50.0, grouping="phoneme")
    assert fig.gradnap_meta["title"] == "Dendrogram of the phoneme groups in layer4"
    # profiles are not clustered here
    with pytest.raises(GradnapError, match="cluster_profiles"):
        plot_dendrogram(profiles, 90.0)


def _leaves(clustering):
    from scipy.cluster.hierarchy import dendrogram

    return dendrogram(clustering.linkage, no_plot=True)["leaves"]
