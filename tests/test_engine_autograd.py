import math

import pytest
import torch
from torch import nn

from gradnap.engine import AutogradEngine, ReferenceEngine, default_layers
from gradnap.engine._autograd import output_seeds
from gradnap.errors import GradnapError
from helpers import (
    N_FEATURES,
    Residual,
    TorchaudioLike,
    assert_engines_agree,
    mixed_model,
    tiny_wav2letter,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(model, layers=None, target="prob", **kw):
    layers = layers or default_layers(model)
    return AutogradEngine(model, layers, target, **kw), ReferenceEngine(model, layers, target)


@pytest.mark.parametrize("target", ["prob", "logprob", "logit"])
@pytest.mark.parametrize("frames", [5, 194, 301])
def test_wav2letter_every_frame_equals_reference(target, frames):
    eng, ref = _pair(tiny_wav2letter(), target=target, batch_frames=64)
    torch.manual_seed(frames)
    assert_engines_agree(eng, ref, torch.randn(N_FEATURES, frames))


@pytest.mark.parametrize("strategy", ["batch", "per_frame", "vjp", "auto"])
@pytest.mark.parametrize("workers", [0, 2])
def test_strategies_equal_the_reference(strategy, workers):
    eng, ref = _pair(
        tiny_wav2letter(), ["input", "layer4", "layer11"], strategy=strategy, workers=workers
    )
    assert_engines_agree(eng, ref, torch.randn(N_FEATURES, 90))
    assert (eng.calibration is not None) == (strategy == "auto")
    if strategy == "auto":
        assert list(eng.calibrations) == [round(math.log2(90))]  # 90 input frames
        assert_engines_agree(eng, ref, torch.randn(N_FEATURES, 61))  # same class: the choice
        assert len(eng.calibrations) == 1
        assert_engines_agree(eng, ref, torch.randn(N_FEATURES, 300))  # a new length class
        assert len(eng.calibrations) == 2


def test_calibration_choice():
    from gradnap.engine._autograd import _Calibration

    # per frame: 1 s backward + 10 s forward shared by the frames; batched: 2 s a frame
    cal = _Calibration(graph_forward=10.0, per_frame=1.0, batch=2.0, frames=100)
    assert cal.choose(100) == "per_frame"
    assert cal.choose(5) == "batch"
    # a batched vjp shares the graph's forward pass; "batch" is no candidate when None
    cal = _Calibration(graph_forward=10.0, per_frame=1.0, batch=None, frames=100, vjp=0.5)
    assert cal.choose(100) == "vjp" and cal.choose(5) == "vjp"
    cal = _Calibration(graph_forward=10.0, per_frame=1.0, batch=None, frames=100, vjp=1.5)
    assert cal.choose(5) == "per_frame"


def test_batch_norm_dropout_model_in_small_batches():
    eng, ref = _pair(mixed_model(), ["input", "act1", "conv4", "out"], batch_frames=7)
    assert_engines_agree(eng, ref, torch.randn(N_FEATURES, 60))


@pytest.mark.parametrize("target", ["prob", "logprob"])
def test_log_softmax_model_with_inplace_relus(target):
    layers = ["input", "acoustic_model.0", "acoustic_model.1", "acoustic_model.7"]
    eng, ref = _pair(TorchaudioLike(), layers, target)
    assert eng.output == "log_probs"
    assert_engines_agree(eng, ref, torch.randn(N_FEATURES, 33))


def test_frozen_parameters():
    model = tiny_wav2letter().requires_grad_(False)
    eng, ref = _pair(model, ["layer2", "layer9"])
    assert_engines_agree(eng, ref, torch.randn(N_FEATURES, 40))


def test_model_that_is_not_a_chain():
    model = Residual()
    assert default_layers(model) == ["input", "relu", "out"]
    eng, ref = _pair(model, ["input", "conv1", "relu", "conv2", "out"])
    assert_engines_agree(eng, ref, torch.randn(N_FEATURES, 25))


class SoftmaxModel(nn.Module):
    output_kind = "probs"

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv1d(N_FEATURES, 5, 3, padding=1)

    def forward(self, x):
        return torch.softmax(self.conv(x), dim=1)


@pytest.mark.parametrize("target", ["prob", "logprob"])
def test_probability_output(target):
    eng, ref = _pair(SoftmaxModel(), ["input", "conv"], target)
    assert_engines_agree(eng, ref, torch.randn(N_FEATURES, 12))


@pytest.mark.parametrize("kind", ["logits", "log_probs", "probs"])
@pytest.mark.parametrize("target", ["prob", "logprob", "logit"])
def test_output_seeds_are_the_gradient_of_the_target(kind, target):
    if target == "logit" and kind != "logits":
        return
    from gradnap.engine._layers import target_values

    torch.manual_seed(0)
    z = torch.randn(5, 4)
    y = {"logits": z, "log_probs": torch.log_softmax(z, 0), "probs": torch.softmax(z, 0)}[kind]
    frames, classes = torch.tensor([0, 3, 3]), torch.tensor([2, 0, 4])
    seeds = output_seeds(y, kind, target, frames, classes)
    for i in range(3):
        yy = y.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(target_values(yy, kind, target)[classes[i], frames[i]], yy)
        torch.testing.assert_close(seeds[i], g[:, frames[i]])


def test_errors():
    model = tiny_wav2letter()
    with pytest.raises(GradnapError, match="batch_frames"):
        AutogradEngine(model, ["input"], batch_frames=0)
    with pytest.raises(GradnapError, match="strategy"):
        AutogradEngine(model, ["input"], strategy="vmap")
    eng = AutogradEngine(model, ["input"])
    fwd = eng.forward(torch.randn(N_FEATURES, 20))
    with pytest.raises(GradnapError, match="frames must lie"):
        eng.sensitivities(fwd, torch.tensor([10]), torch.tensor([0]))
    with pytest.raises(GradnapError, match="differ in length"):
        eng.sensitivities(fwd, torch.tensor([1, 2]), torch.tensor([0]))
    with pytest.raises(GradnapError, match=r"\(features, frames\)"):
        eng.forward(torch.randn(1, N_FEATURES, 20))
