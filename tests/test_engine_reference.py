import pytest
import torch
from torch import nn

from gradnap.engine import ForwardPass, ReferenceEngine
from gradnap.errors import GradnapError
from helpers import N_FEATURES

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear_model() -> nn.Conv1d:
    torch.manual_seed(0)
    return nn.Conv1d(N_FEATURES, 4, 3, padding=1)


def test_known_answer_logit_of_a_linear_model():
    # d z[k, t] / d x[f, t + j - 1] = W[k, f, j]: the window of the weight row
    model = _linear_model()
    eng = ReferenceEngine(model, ["input"], target="logit")
    x = torch.randn(N_FEATURES, 10)
    fwd = eng.forward(x)
    frames, classes = torch.tensor([0, 4, 9]), torch.tensor([1, 3, 0])
    g = eng.sensitivities(fwd, frames, classes)["input"].grads  # (3, F, 10)
    w = model.weight.detach()
    for r, (t, k) in enumerate(zip(frames.tolist(), classes.tolist(), strict=True)):
        want = torch.zeros(N_FEATURES, 12)
        want[:, t : t + 3] = w[k]
        torch.testing.assert_close(g[r], want[:, 1:11])


def test_known_answer_softmax_targets():
    # prob: p_k (W_k - sum_j p_j W_j); logprob: W_k - sum_j p_j W_j (at the frame's window)
    model = _linear_model()
    x = torch.randn(N_FEATURES, 6)
    with torch.no_grad():
        p = torch.softmax(model(x[None])[0], 0)  # (K, T)
    w = model.weight.detach()  # (K, F, 3)
    t, k = 2, 1
    mean_w = (p[:, t, None, None] * w).sum(0)
    for target, scale in (("prob", p[k, t]), ("logprob", 1.0)):
        eng = ReferenceEngine(model, ["input"], target=target)
        g = eng.sensitivities(eng.forward(x), torch.tensor([t]), torch.tensor([k]))["input"]
        torch.testing.assert_close(g.grads[0, :, t - 1 : t + 2], scale * (w[k] - mean_w))
        assert g.grads[0, :, : t - 1].abs().max() == 0 and g.grads[0, :, t + 2 :].abs().max() == 0
        assert g.start.tolist() == [0]


def test_layer_outputs_and_shapes():
    model = nn.Sequential(_linear_model(), nn.ReLU(), nn.Conv1d(4, 3, 1))
    eng = ReferenceEngine(model, ["0", "1", "2"])
    fwd = eng.forward(torch.randn(N_FEATURES, 7))
    assert fwd.activations["1"].shape == (4, 7)
    assert (fwd.activations["1"] >= 0).all()
    torch.testing.assert_close(fwd.probs.sum(0), torch.ones(7))
    out = eng.sensitivities(fwd, torch.tensor([], dtype=torch.int64), torch.tensor([]))
    assert out["2"].grads.shape == (0, 3, 7)
    with pytest.raises(GradnapError, match="forward pass"):
        eng.sensitivities(ForwardPass({}, fwd.probs), torch.tensor([0]), torch.tensor([0]))
