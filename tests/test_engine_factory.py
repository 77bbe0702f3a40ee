import logging

import pytest
import torch

from gradnap.engine import AutogradEngine, ConeEngine, ReferenceEngine, make_engine
from gradnap.errors import GradnapError
from helpers import N_FEATURES, Residual, TorchaudioLike, tiny_wav2letter

pytestmark = pytest.mark.usefixtures("one_thread")


def test_auto_picks_the_cone_engine_for_chains():
    eng = make_engine(tiny_wav2letter())
    assert isinstance(eng, ConeEngine)
    assert eng.layers == ["input"] + [f"layer{i}" for i in range(1, 12)]
    assert eng.target == "prob"
    assert isinstance(make_engine(TorchaudioLike(), ["acoustic_model.3"]), ConeEngine)


def test_auto_falls_back_to_autograd_and_logs_why(caplog):
    with caplog.at_level(logging.INFO, logger="gradnap.engine"):
        eng = make_engine(Residual(), ["input", "relu"], target="logprob")
    assert isinstance(eng, AutogradEngine)
    assert "using the autograd engine: the model's modules do not run once" in caplog.text
    with pytest.raises(GradnapError, match="cone engine cannot handle"):
        make_engine(Residual(), ["input"], kind="cone")


def test_declared_output_changes_the_choice():
    # declared wrongly: the cone engine refuses, the autograd engine takes the declaration
    eng = make_engine(TorchaudioLike(), ["input"], output="logits")
    assert isinstance(eng, AutogradEngine) and eng.output == "logits"


def test_explicit_kinds_and_errors():
    model = tiny_wav2letter()
    assert isinstance(make_engine(model, ["layer3"], kind="autograd"), AutogradEngine)
    assert isinstance(make_engine(model, ["layer3"], kind="reference"), ReferenceEngine)
    with pytest.raises(GradnapError, match="unknown engine"):
        make_engine(model, kind="fast")
    with pytest.raises(GradnapError, match="valid names"):
        make_engine(model, ["layer99"])
    with pytest.raises(GradnapError, match="workers"):
        make_engine(model, workers=-1)
    eng = make_engine(Residual(), ["input"], strategy="per_frame")
    assert isinstance(eng, AutogradEngine) and eng.strategy == "per_frame"
    with pytest.raises(GradnapError, match="strategy: 'fast'; choose from auto, batch"):
        make_engine(Residual(), ["input"], strategy="fast")


def test_engines_agree_with_each_other_through_the_factory():
    model = tiny_wav2letter()
    x = torch.randn(N_FEATURES, 230)
    results = {}
    for kind in ("cone", "autograd"):
        eng = make_engine(model, ["input", "layer9"], target="logprob", kind=kind)
        fwd = eng.forward(x)
        results[kind] = eng.sensitivities(fwd, torch.tensor([3, 50]), torch.tensor([0, 2]))
    cone, auto = results["cone"]["input"], results["autograd"]["input"]
    for r in range(2):
        s = int(cone.start[r])
        lo, hi = max(0, s), min(230, s + cone.grads.shape[-1])
        torch.testing.assert_close(cone.grads[r, :, lo - s : hi - s], auto.grads[r, :, lo:hi])
        assert auto.grads[r, :, :lo].abs().sum() == 0 and auto.grads[r, :, hi:].abs().sum() == 0
