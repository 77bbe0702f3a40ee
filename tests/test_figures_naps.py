"""NAP heatmaps (``gradnap.figures.naps``)."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradnap.errors import GradnapError
from gradnap.figures import plot_naps, save_figure
from test_figures_save import assert_png


def test_nap_heatmaps_share_a_symmetric_scale(tmp_path):
    rng = np.random.default_rng(3)
    naps = {g: rng.normal(size=(6, 10)) for g in ("AA", "T", "IY")}
    naps["T"][2, 0] = -9.0  # the extreme of all panels, negative
    fig = plot_naps(naps, layer="layer2", caption="3 phonemes", ranks=10, clip_percentile=None)
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
    fig2 = plot_naps(naps, shared_limits=False, ranks=10, clip_percentile=None)
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


def test_nap_heatmaps_show_the_ranks_with_data_on_a_robust_scale():
    rng = np.random.default_rng(4)
    nap = np.zeros((50, 40))
    nap[:, :12] = rng.normal(size=(50, 12))  # data in the first 12 ranks only
    nap[7, 0] = 40.0  # one neuron that would wash out a linear scale
    fig = plot_naps({"a": nap, "b": nap / 2})
    im = fig.axes[0].images[0]
    shown = im.get_array().shape[1]
    assert 12 <= shown < 40 and "ranks 1–" in fig.axes[0].get_xlabel()
    lo, hi = im.get_clim()
    both = np.abs(np.stack([nap, nap / 2])[:, :, :shown])  # one scale for both panels
    assert lo == -hi and hi == pytest.approx(np.percentile(both, 99))
    assert hi < 40.0 and "99th percentile" in fig.axes[-1].get_ylabel()
