"""Action potentials and the optimal input (``gradnap.figures.action``)."""

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from gradnap.analysis import optimal_input_for_profile, responsiveness, top_neurons
from gradnap.asr.model import ModelConfig, Wav2Letter
from gradnap.errors import GradnapError
from gradnap.figures import plot_action_potentials, save_figure
from gradnap.figures.action import OTHER_COLOUR
from test_figures_save import assert_png

RNG = np.random.default_rng(0)


def test_action_potentials_with_optimal_input(tmp_path):
    torch.manual_seed(0)
    model = Wav2Letter(ModelConfig("tiny", (6,) * 8 + (8, 8, 29), n_features=16))
    profile = 0.1 * RNG.normal(size=(6, 31))
    profile[4] += 3.0
    opt = optimal_input_for_profile(model, "layer2", profile, k=3)
    fig = plot_action_potentials(
        profile,
        top=top_neurons(profile, 3),
        r=responsiveness(profile),
        times_ms=(np.arange(31) - 15) * 16.0,
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


def test_action_potentials_highlight_exactly_the_neurons_given():
    profile = RNG.normal(size=(7, 9))
    profile[3] += 10.0  # the most responsive neuron, not asked for
    r = np.array([0.5, -1.0, 2.0, 3.0, -4.0, 5.0, 6.0])  # any numbers: drawn, not computed
    fig = plot_action_potentials(profile, top=[5, 0, 2], r=r, layer="layer1", group="AE")
    ax = fig.axes[0]
    coloured = [ln for ln in ax.get_lines() if ln.get_label().startswith("neuron")]
    assert [ln.get_label() for ln in coloured] == [
        "neuron 5 (r=+5)",
        "neuron 0 (r=+0.5)",
        "neuron 2 (r=+2)",
    ]
    for ln, n in zip(coloured, [5, 0, 2], strict=True):
        np.testing.assert_array_equal(ln.get_ydata(), profile[n])
    assert [to_hex(ln.get_color()) for ln in coloured] == [to_hex(f"C{i}") for i in range(3)]
    grey = [
        ln
        for ln in ax.get_lines()
        if to_hex(ln.get_color()) == to_hex(OTHER_COLOUR) and len(ln.get_ydata())
    ]
    drawn = sorted(
        next(n for n in range(7) if np.array_equal(ln.get_ydata(), profile[n])) for ln in grey
    )
    assert drawn == [1, 3, 4, 6]  # every other neuron grey, the most responsive one too
    assert ax.get_title() == "layer1 AE: all 7 neurons, top 3 coloured"
    assert "r = responsiveness" in ax.get_legend().get_title().get_text()  # r is defined
    # without r the legend names the neurons only; without top every neuron is grey
    fig = plot_action_potentials(profile, top=np.array([4]))
    assert fig.axes[0].get_title() == "all 7 neurons, top 1 coloured"  # no stray ": "
    assert fig.axes[0].get_legend().get_title().get_text() == ""
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert [x for x in labels if x.startswith("neuron")] == ["neuron 4"]
    fig = plot_action_potentials(profile)
    assert not [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("neuron")]
    with pytest.raises(GradnapError, match="outside"):
        plot_action_potentials(profile, top=[7])
    with pytest.raises(GradnapError, match="repeated"):
        plot_action_potentials(profile, top=[1, 1])
    with pytest.raises(GradnapError, match="one per neuron"):
        plot_action_potentials(profile, top=[1], r=r[:3])
