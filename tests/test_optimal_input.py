import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from gradnap.analysis.optimal_input import (
    optimal_input,
    optimal_input_for_profile,
    optimal_input_unsupported,
)
from gradnap.defaults import OPTIMAL_INPUT
from gradnap.errors import GradnapError
from gradnap.geometry import ConvSpec, Geometry
from helpers import tiny_model

N_FEATURES = 16  # the tiny model on 16 feature bins: short optimisations


def test_optimizer_lowers_its_loss_when_responses_dominate():
    # Weights scaled so the response term, not the regulariser, dominates the loss
    # (on a random model at PyTorch's init scale the 15/RF L1 term wins: see docs).
    model = tiny_model(n_features=N_FEATURES, scale=4.0)
    profile = np.zeros((8, 5))
    profile[2] = [0, 1, 2, 1, 0]  # r > 0: maximised
    profile[5] = [0, -1, -3, -1, 0]  # r < 0: minimised
    profile[6] = [0, 0, 1, 0, 0]
    res = optimal_input_for_profile(model, "layer4", profile, k=3)
    assert res.neurons.tolist() == [5, 2, 6]
    assert res.signs.tolist() == [-1.0, 1.0, 1.0]
    assert res.losses.shape == (OPTIMAL_INPUT.steps + 1,)
    assert res.losses[-1] < res.losses[0]
    assert (res.signs * res.pre_end).sum() > (res.signs * res.pre_start).sum()


def test_optimizer_without_regularisation_drives_each_neuron_its_way():
    model = tiny_model(n_features=N_FEATURES)
    cfg = dataclasses.replace(OPTIMAL_INPUT, l1=0.0, l2=0.0)
    res = optimal_input(model, "layer2", [1, 4], [1, -1], config=cfg)
    assert res.losses[-1] < res.losses[0]
    assert res.pre_end[0] > res.pre_start[0]
    assert res.pre_end[1] < res.pre_start[1]
    np.testing.assert_allclose(res.losses[-1], -(res.pre_end[0] - res.pre_end[1]), rtol=1e-5)


@pytest.mark.parametrize("layer,index", [("layer1", 1), ("layer3", 3), ("layer9.conv", 9)])
def test_optimal_input_covers_the_receptive_field_without_padding(layer, index):
    model = tiny_model(n_features=N_FEATURES)
    res = optimal_input(model, layer, [0, 3])
    geom = model.geometry
    assert res.x.shape == (N_FEATURES, geom.receptive_field(index))
    assert res.layer_index == index
    assert res.times_ms.shape == (res.x.shape[1],)
    assert res.times_ms[0] == pytest.approx(-res.times_ms[-1])
    # The same x inside a long random context gives the same pre-activation: nothing of
    # the padding or of other frames reached the centre position.
    t = 60
    lo, hi = geom.span(t, t, index, 0)
    big = torch.randn(1, N_FEATURES, 400)
    big[0, :, lo : hi + 1] = torch.as_tensor(res.x, dtype=torch.float32)
    y = big
    with torch.no_grad():
        for i in range(index - 1):
            y = model[i](y)
        pre = model[index - 1].conv(y)[0, [0, 3], t].numpy()
    np.testing.assert_allclose(pre, res.pre_end, rtol=1e-4, atol=1e-6)


def test_optimal_input_is_seeded_and_leaves_the_model_alone():
    model = tiny_model(n_features=N_FEATURES)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    a = optimal_input(model, "layer2", [0], seed=3)
    b = optimal_input(model, "layer2", [0], seed=3)
    c = optimal_input(model, "layer2", [0], seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    assert model.training
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, q) and p.grad is None


def test_optimal_input_layer_errors():
    model = tiny_model(n_features=N_FEATURES)
    with pytest.raises(GradnapError, match="layer1, layer1.conv, layer1.relu, layer2"):
        optimal_input(model, "layer99", [0])
    with pytest.raises(GradnapError, match="valid layer names"):
        optimal_input(model, "input", [0])
    # an activation module means the convolution before it
    np.testing.assert_array_equal(
        optimal_input(model, "layer2.relu", [0]).x, optimal_input(model, "layer2", [0]).x
    )
    lead = nn.Sequential(nn.Identity(), nn.Conv1d(3, 2, 3), nn.ReLU())
    with pytest.raises(GradnapError, match="'0'.*valid layer names: 1, 2$"):
        optimal_input(lead, "0", [0])
    assert optimal_input(lead, "2", [1]).x.shape == (3, 3)
    with pytest.raises(GradnapError, match="out of range"):
        optimal_input(model, "layer2", [8])
    with pytest.raises(GradnapError, match="signs"):
        optimal_input(model, "layer2", [0, 1], [1])


def test_no_optimal_input_for_a_waveform_model():
    from gradnap.defaults import FeatureConfig

    model = tiny_model(n_features=N_FEATURES)
    assert optimal_input_unsupported(model) is None
    model.features = FeatureConfig(input="waveform")
    reason = optimal_input_unsupported(model)
    assert reason is not None and "the model takes the waveform" in reason
    with pytest.raises(GradnapError, match="optimal inputs are spectrogram windows"):
        optimal_input(model, "layer2", [0])


def test_optimal_input_general_model_without_geometry():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(6, 4, 5, stride=2, padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Conv1d(4, 4, 3, dilation=2, padding="same"), nn.Tanh()),
        nn.Conv1d(4, 3, 1),
    )
    res = optimal_input(
        model, "2", [1, 2], [1, -1], config=dataclasses.replace(OPTIMAL_INPUT, l1=0, l2=0)
    )
    geom = Geometry((ConvSpec.from_conv(model[0]), ConvSpec.from_conv(model[2][0])))
    assert res.x.shape == (6, geom.receptive_field(2))
    assert res.layer_index == 2
    assert res.losses[-1] < res.losses[0]
