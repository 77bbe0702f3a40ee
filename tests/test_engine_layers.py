import pytest
import torch
from torch import nn

from gradnap.asr.model import build_model
from gradnap.engine import default_layers
from gradnap.engine._layers import (
    capture,
    check_layers,
    check_target,
    layer_names,
    output_kind,
)
from gradnap.errors import GradnapError
from helpers import N_FEATURES, Residual, TorchaudioLike, tiny_wav2letter

pytestmark = pytest.mark.usefixtures("one_thread")


def test_project_model_layer_names():
    model = build_model("default", seed=0)
    assert default_layers(model) == ["input"] + [f"layer{i}" for i in range(1, 12)]
    names = layer_names(model)
    assert names[0] == "input"
    assert {"layer2", "layer2.conv", "layer2.relu", "layer11.conv"} <= set(names)


def test_unknown_layer_lists_valid_names():
    model = tiny_wav2letter()
    with pytest.raises(GradnapError, match="'layer12'") as info:
        check_layers(model, ["input", "layer12"])
    assert "valid names are: input, layer1, layer1.conv" in str(info.value)
    with pytest.raises(GradnapError, match="twice"):
        check_layers(model, ["layer1", "layer1"])
    with pytest.raises(GradnapError, match="no layer"):
        check_layers(model, [])
    assert check_layers(model, "layer3") == ["layer3"]


def test_default_layers_of_other_models():
    assert default_layers(TorchaudioLike())[1:] == [f"acoustic_model.{i}" for i in (1, 3, 5, 7)]
    # not a chain: activation modules and the last module
    assert default_layers(Residual()) == ["input", "relu", "out"]


def test_layer_means_post_activation_output():
    model = tiny_wav2letter()
    x = torch.randn(1, N_FEATURES, 80)
    with torch.no_grad(), capture(model, ["layer2", "layer2.conv"]) as got:
        model(x)
        pre = model.layer2.conv(model.layer1(x))
    torch.testing.assert_close(got["layer2.conv"], pre)
    torch.testing.assert_close(got["layer2"], torch.relu(pre))
    assert (got["layer2"] >= 0).all() and (got["layer2.conv"] < 0).any()


def test_capture_survives_inplace_activations():
    model = TorchaudioLike()
    x = torch.randn(1, N_FEATURES, 40)
    with torch.no_grad(), capture(model, ["acoustic_model.0", "acoustic_model.1"]) as got:
        model(x)
        pre = model.acoustic_model[0](x)
    torch.testing.assert_close(got["acoustic_model.0"], pre)
    torch.testing.assert_close(got["acoustic_model.1"], torch.relu(pre))
    assert not model.acoustic_model[0]._forward_hooks  # hooks removed


def test_output_kinds_and_targets():
    assert output_kind(tiny_wav2letter()) == "logits"
    assert output_kind(TorchaudioLike()) == "log_probs"
    assert output_kind(nn.Conv1d(1, 1, 1)) == "logits"
    assert output_kind(TorchaudioLike(), "probs") == "probs"
    with pytest.raises(GradnapError, match="output kind"):
        output_kind(nn.Conv1d(1, 1, 1), "softmax")
    check_target("logit", "logits")
    with pytest.raises(GradnapError, match="needs a model that outputs logits"):
        check_target("logit", "log_probs")
    with pytest.raises(GradnapError, match="unknown target"):
        check_target("p", "logits")
