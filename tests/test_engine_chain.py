import pytest
import torch
from torch import nn

from gradnap.engine import ChainError, ConeEngine, ReferenceEngine, extract_chain
from helpers import (
    N_FEATURES,
    TorchaudioLike,
    assert_engines_agree,
    mixed_model,
    tiny_wav2letter,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class FunctionalScale(nn.Module):
    """Modules in order, but forward doubles the hidden layer: the chain cannot know."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv1d(N_FEATURES, 4, 3)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv1d(4, 5, 1)

    def forward(self, x):
        return self.conv2(2.0 * self.relu(self.conv1(x)))


class Reordered(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2 = nn.Conv1d(N_FEATURES, N_FEATURES, 1)
        self.conv1 = nn.Conv1d(N_FEATURES, N_FEATURES, 3)

    def forward(self, x):
        return self.conv2(self.conv1(x))


def test_wav2letter_chain():
    model = tiny_wav2letter()
    chain = extract_chain(model)
    assert chain.num_stages == 11
    assert chain.geometry == model.geometry
    assert chain.output == "logits"
    assert chain.positions["input"] == (0, 0)
    assert chain.positions["layer2.conv"] == (2, 0)
    assert chain.positions["layer2"] == chain.positions["layer2.relu"] == (2, 1)
    assert chain.positions["layer11"] == (11, 0)
    assert chain.stage_names() == [f"layer{i}" for i in range(1, 12)]


def test_functional_operations_are_detected():
    with pytest.raises(ChainError, match="does not reproduce"):
        extract_chain(FunctionalScale())


def test_call_order_is_checked():
    with pytest.raises(ChainError, match="definition order"):
        extract_chain(Reordered())


def test_training_mode_and_unsupported_modules():
    m = nn.Sequential(nn.Conv1d(N_FEATURES, 4, 3), nn.Dropout(0.5)).train()
    with pytest.raises(ChainError, match="training mode"):
        extract_chain(m)
    m = nn.Sequential(nn.Conv1d(N_FEATURES, 4, 3), nn.BatchNorm1d(4)).train()
    with pytest.raises(ChainError, match="training mode"):
        extract_chain(m)
    with pytest.raises(ChainError, match="no Conv1d"):
        extract_chain(nn.Sequential(nn.ReLU()))
    with pytest.raises(ChainError, match="Linear"):
        extract_chain(nn.Sequential(nn.Conv1d(N_FEATURES, 4, 3), nn.Linear(4, 4)))


@pytest.mark.parametrize("final", [nn.Softmax(dim=1), nn.LogSoftmax(dim=1)])
def test_trailing_softmax_sets_the_output_kind(final):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(N_FEATURES, 4, 5, padding=2), nn.Sigmoid(), nn.Conv1d(4, 5, 3), final
    ).eval()
    chain = extract_chain(model)
    assert chain.output == ("probs" if isinstance(final, nn.Softmax) else "log_probs")
    cone = ConeEngine(model, ["input", "1", "2"], target="logprob")
    ref = ReferenceEngine(model, ["input", "1", "2"], target="logprob", output=chain.output)
    assert_engines_agree(cone, ref, torch.randn(N_FEATURES, 17))


def test_chain_forward_reproduces_every_position():
    model = mixed_model()
    chain = extract_chain(model)
    x = torch.randn(1, N_FEATURES, 50)
    vals = chain.forward(x)
    with torch.no_grad():
        h = x
        for name, module in model.named_children():
            h = module(h)
            if name in chain.positions:
                i, j = chain.positions[name]
                torch.testing.assert_close(vals[i][j], h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("builder", [tiny_wav2letter, TorchaudioLike, mixed_model])
def test_model_geometry_matches_output_length(builder):
    model = builder()
    geom = extract_chain(model).geometry
    for t in (15, 64, 257):
        n_out = geom.output_length(t)
        assert n_out > 0
        assert model(torch.randn(1, N_FEATURES, t)).shape[-1] == n_out
