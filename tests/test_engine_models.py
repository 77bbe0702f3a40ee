"""Tiny random models and comparison helpers shared by the engine tests."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradnap.asr.model import ModelConfig, Wav2Letter
from gradnap.engine import Window

N_FEATURES = 6
N_CLASSES = 5


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models: one intra-op thread (OpenMP threads only wait on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _positive_biases(model: nn.Module) -> None:
    """Small positive biases keep a few-channel ReLU network alive on short inputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv1d) and m.bias is not None:
                m.bias.uniform_(0.0, 0.2)


def tiny_wav2letter(seed: int = 0) -> Wav2Letter:
    """The project's architecture (kernels 48, 7.., 32, 1, 1; stride 2) with few channels."""
    torch.manual_seed(seed)
    cfg = ModelConfig("tiny", (3,) * 8 + (5, 5, N_CLASSES), n_features=N_FEATURES)
    model = Wav2Letter(cfg).eval()
    _positive_biases(model)
    return model


class TorchaudioLike(nn.Module):
    """torchaudio's ``Wav2Letter`` layout: ``acoustic_model`` of Conv1d/ReLU(inplace) pairs
    (numeric padding, the k=32 layer lengthens the output by one), ``log_softmax`` in forward."""

    output_kind = "log_probs"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        c = 3
        self.acoustic_model = nn.Sequential(
            nn.Conv1d(N_FEATURES, c, 12, stride=2, padding=5),
            nn.ReLU(inplace=True),
            nn.Conv1d(c, c, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv1d(c, 4, 8, padding=4),
            nn.ReLU(inplace=True),
            nn.Conv1d(4, N_CLASSES, 1),
            nn.ReLU(inplace=True),
        )
        _positive_biases(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.acoustic_model(x), dim=1)


def _randomize_bn(bn: nn.BatchNorm1d) -> None:
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)


def mixed_model(seed: int = 0) -> nn.Sequential:
    """Strides 2 and 3, dilation 2, "same", "valid" and numeric padding, batch norm (folded
    and not), dropout, several activations, two convolutions in a row."""
    torch.manual_seed(seed)
    m = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv1d(N_FEATURES, 4, 5, stride=2, padding=2),
            bn1=nn.BatchNorm1d(4),
            act1=nn.LeakyReLU(0.1),
            conv2=nn.Conv1d(4, 4, 3, dilation=2, padding="same"),
            act2=nn.Tanh(),
            drop=nn.Dropout(0.3),
            conv3=nn.Conv1d(4, 3, 4, stride=3, padding=1),
            act3=nn.GELU(),
            bn3=nn.BatchNorm1d(3),
            conv4=nn.Conv1d(3, 4, 2, padding="valid"),
            conv5=nn.Conv1d(4, 4, 3, padding="same"),
            act5=nn.ELU(),
            out=nn.Conv1d(4, N_CLASSES, 2, padding=1),
        )
    )
    _randomize_bn(m.bn1)
    _randomize_bn(m.bn3)
    return m.eval()


class Residual(nn.Module):
    """Not a chain (a skip connection): only the autograd engine can handle it."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv1d(N_FEATURES, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv1d(4, 4, 3, padding=1)
        self.out = nn.Conv1d(4, N_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv1(x))
        return self.out(h + self.relu(self.conv2(h)))


def expand(win: Window, length: int) -> torch.Tensor:
    """Place windows ``(n, C, W)`` starting at ``win.start`` into ``(n, C, length)``;
    columns outside ``0..length-1`` must be zero and are dropped."""
    n, c, w = win.grads.shape
    lo = min(0, int(win.start.min())) if n else 0
    hi = max(length, int((win.start + w).max())) if n else length
    full = win.grads.new_zeros(n, c, hi - lo)
    for r in range(n):
        s = int(win.start[r]) - lo
        full[r, :, s : s + w] = win.grads[r]
    outside = torch.cat([full[:, :, :-lo], full[:, :, -lo + length :]], dim=2)
    assert outside.abs().max() == 0 if outside.numel() else True, "nonzero outside the utterance"
    return full[:, :, -lo : -lo + length]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|`` (0 when both are zero)."""
    scale = float(b.abs().max())
    diff = float((a - b).abs().max())
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def assert_engines_agree(engine, reference, x: torch.Tensor, tol: float = 1e-4) -> int:
    """Every output frame, predicted class: ``engine`` equals ``reference`` in every layer.

    Returns the number of frames compared.
    """
    fwd = engine.forward(x)
    ref_fwd = reference.forward(x)
    torch.testing.assert_close(fwd.probs, ref_fwd.probs, rtol=1e-4, atol=1e-6)
    frames = torch.arange(fwd.probs.shape[1])
    classes = fwd.probs.argmax(0)
    got = engine.sensitivities(fwd, frames, classes)
    want = reference.sensitivities(ref_fwd, frames, classes)
    assert list(got) == list(want) == engine.layers
    for name in engine.layers:
        torch.testing.assert_close(fwd.activations[name], ref_fwd.activations[name])
        length = ref_fwd.activations[name].shape[-1]
        g = expand(got[name], length)
        w = want[name].grads
        assert g.shape == w.shape, name
        assert float(w.abs().max()) > 0, f"{name}: all-zero reference (dead model?)"
        err = rel_err(g, w)
        assert err <= tol, f"layer {name}: relative error {err:.3g}"
    return frames.numel()


@pytest.mark.parametrize("builder", [tiny_wav2letter, TorchaudioLike, mixed_model])
def test_model_geometry_matches_output_length(builder):
    from gradnap.engine import extract_chain

    model = builder()
    geom = extract_chain(model).geometry
    for t in (15, 64, 257):
        n_out = geom.output_length(t)
        assert n_out > 0
        assert model(torch.randn(1, N_FEATURES, t)).shape[-1] == n_out


def test_expand_places_windows():
    grads = torch.tensor([[[0.0, 1.0, 2.0]], [[3.0, 4.0, 0.0]]])
    full = expand(Window(grads, torch.tensor([-1, 3])), 5)
    assert full.tolist() == [[[1.0, 2.0, 0, 0, 0]], [[0, 0, 0, 3.0, 4.0]]]
    with pytest.raises(AssertionError, match="outside"):
        expand(Window(grads, torch.tensor([0, 4])), 5)
