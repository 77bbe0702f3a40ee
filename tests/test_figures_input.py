"""Input-layer GradNAP and NAvAI heatmaps (``gradnap.figures.input``)."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from gradnap.errors import GradnapError
from gradnap.features import mel_frequencies
from gradnap.figures import (
    plot_input_gradnap,
    plot_input_gradnaps,
    plot_input_spectra,
    save_figure,
)
from test_figures_save import assert_png

RNG = np.random.default_rng(0)
FREQS = mel_frequencies()
W0 = 25
TIMES = (np.arange(W0) - 12) * 8.0


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


def test_input_spectra_in_hz_and_ms(tmp_path):
    freqs = np.arange(201) * 40.0  # 25 ms frames at 16 kHz
    times = np.arange(-24, 25) * 10.0
    panels = ("sensitivity", "GradNAP", "input power")
    rows = {g: {p: RNG.normal(size=(201, 49)) for p in panels} for g in ("a", "s")}
    rows["s"]["sensitivity"][150, 24] = 30.0
    fig = plot_input_spectra(
        rows, times_ms=times, freqs=freqs, units={"sensitivity": "dB re dataset"}
    )
    heat = fig.axes[:6]  # then the colour bars
    assert [ax.get_title() for ax in heat[:3]] == [f"{p}, a" for p in panels]
    assert all(ax.get_ylabel() == "frequency (Hz)" for ax in heat)
    assert heat[-1].get_xlabel() == "time relative to alignment (ms)" and heat[0].get_xlabel() == ""
    labels = [t.get_text() for t in heat[0].get_yticklabels()]
    assert labels == [str(k * 1000) for k in range(9)]  # a linear axis, every kHz
    assert heat[0].get_yticks()[labels.index("6000")] == pytest.approx(150.0)
    assert heat[3].images[0].get_clim() == (-30.0, 30.0)
    assert fig.axes[6].get_ylabel() == "dB re dataset"
    assert_png(save_figure(fig, tmp_path / "spectra.png"))
    with pytest.raises(GradnapError, match="panels"):
        plot_input_spectra(
            {"a": rows["a"], "b": {"x": rows["a"]["GradNAP"]}}, times_ms=times, freqs=freqs
        )
    with pytest.raises(GradnapError, match="freqs has 200 entries"):
        plot_input_spectra(rows, times_ms=times, freqs=freqs[:-1])
