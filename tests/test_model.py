import numpy as np
import pytest
import torch

from gradnap.asr.model import CONFIGS, ModelConfig, Wav2Letter, build_model, output_frame_seconds
from gradnap.errors import GradnapError
from gradnap.features import frame_to_seconds
from helpers import TINY


def test_paper_config_size_and_receptive_field():
    model = build_model("paper")
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 24.7e6) / 24.7e6 < 0.01
    assert model.geometry.receptive_field(11) == 194
    assert model.geometry.output_stride == 2


def test_default_config_same_depth_kernels_strides():
    d, p = CONFIGS["default"], CONFIGS["paper"]
    assert d.kernels == p.kernels and d.strides == p.strides
    assert len(d.channels) == len(p.channels) == 11
    assert d.channels[-1] == p.channels[-1] == 29
    assert sum(x.numel() for x in build_model("default").parameters()) < 0.5 * 24.7e6


def test_module_layout():
    model = build_model(TINY, seed=0)
    names = dict(model.named_modules())
    for i in range(1, 12):
        assert isinstance(names[f"layer{i}.conv"], torch.nn.Conv1d)
        assert (f"layer{i}.relu" in names) == (i < 11)
    assert model.output_kind == "logits"
    assert model.layer_names() == [f"layer{i}" for i in range(1, 12)]


@pytest.mark.parametrize("config", [TINY, CONFIGS["default"]])
def test_output_lengths_odd_and_even(config):
    model = build_model(config, seed=0)
    for t in (2, 3, 99, 100, 101, 256, 257):
        out = model(torch.randn(1, 128, t))
        assert out.shape == (1, 29, model.geometry.output_length(t))
        assert out.shape[2] == t // 2  # stride 2, padding (48 - 2) // 2 = 23


def test_output_lengths_with_explicit_paddings():
    cfg = ModelConfig(
        "ta", TINY.channels, paddings=(23, 3, 3, 3, 3, 3, 3, 3, 16, 0, 0), final_relu=True
    )
    model = Wav2Letter(cfg)
    assert isinstance(model.layer11.relu, torch.nn.ReLU)
    for t in (10, 11, 200, 201):
        assert model(torch.randn(2, 128, t)).shape[2] == cfg.geometry.output_length(t)


def test_bad_paddings_length():
    with pytest.raises(GradnapError, match="paddings"):
        ModelConfig("bad", TINY.channels, paddings=(1, 2))


def _empirical_dependence(model, t_in: int, frames: list[int]) -> list[list[int]]:
    """For each input frame in ``frames``: the output frames whose value changes when
    that input frame is perturbed (one batched forward pass)."""
    torch.manual_seed(1)
    x = torch.randn(1, 128, t_in)
    batch = x.repeat(len(frames) + 1, 1, 1)
    for i, f in enumerate(frames):
        batch[i + 1, :, f] += 5.0
    with torch.no_grad():
        out = model(batch)  # (n + 1, K, T')
    diff = (out[1:] - out[:1]).abs().amax(dim=1)  # (n, T')
    return [np.nonzero(row.numpy() > 0)[0].tolist() for row in diff]


def test_receptive_field_matches_empirical():
    # Positive weights and biases keep every ReLU open, so a change anywhere in the
    # receptive field reaches the output.
    model = build_model(TINY, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.abs() * 0.2 + 0.01)
    g = model.geometry
    t_in = 500
    for frame, changed in zip(
        (250, 251), _empirical_dependence(model, t_in, [250, 251]), strict=True
    ):
        # output frames tau whose cone [lo, hi] contains the perturbed input frame
        expected = [
            tau
            for tau in range(g.output_length(t_in))
            if g.cone(tau, 0)[0] <= frame <= g.cone(tau, 0)[1]
        ]
        assert changed == expected
    # the input frames that one output frame depends on: exactly its 194-frame cone
    tau = 120
    lo, hi = g.cone(tau, 0)
    candidates = list(range(lo - 3, hi + 4))
    deps = _empirical_dependence(model, t_in, candidates)
    dep = [f for f, changed in zip(candidates, deps, strict=True) if tau in changed]
    assert (dep[0], dep[-1], len(dep)) == (lo, hi, hi - lo + 1)
    assert g.receptive_field(11) == 194 == len(dep)


def test_output_frame_seconds():
    cfg = CONFIGS["default"]
    g = cfg.geometry
    taus = np.arange(5)
    secs = cfg.output_frame_seconds(taus)
    assert np.allclose(secs, frame_to_seconds(np.array([g.centre(t, 11) for t in taus])))
    # Output frames are output_stride input frames (16 ms) apart.
    assert np.allclose(np.diff(secs), 2 * 0.008)
    model = build_model("default")
    assert output_frame_seconds(model, 3) == pytest.approx(cfg.output_frame_seconds(3))
    assert model.output_frame_seconds(3) == pytest.approx(cfg.output_frame_seconds(3))


def test_unknown_config():
    with pytest.raises(GradnapError, match="paper"):
        build_model("nope")


def test_initialisation_keeps_the_signal_scale():
    # He initialisation: post-ReLU activations keep their scale through the stack
    # (PyTorch's default Conv1d init shrinks them ~30x over eleven layers).
    model = build_model("default", seed=0)
    x = torch.randn(2, 128, 300)
    stds = []
    with torch.no_grad():
        for block in model:
            x = block(x)
            stds.append(float(x.std()))
    assert min(stds) > 0.25 * stds[0]
    assert all(float(b.conv.bias.detach().abs().max()) == 0 for b in model)


def test_output_frame_time_matches_docstring():
    from gradnap.asr.model import CONFIGS

    c = CONFIGS["default"]
    assert abs(c.output_frame_seconds(10) - (2 * 10 + 1.5) * 0.008) < 1e-12
