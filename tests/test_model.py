import torch

from gradnap.model import CONFIGS, build_model


def test_paper_config_size_and_receptive_field():
    model = build_model("paper")
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 24.7e6) / 24.7e6 < 0.01
    assert model.geometry.receptive_field(11) == 194
    assert model.geometry.output_stride == 2


def test_output_lengths_odd_and_even():
    model = build_model("default", seed=0)
    for t in (2, 3, 99, 100, 101):
        out = model(torch.randn(1, 128, t))
        assert out.shape == (1, 29, model.geometry.output_length(t))
    assert CONFIGS["default"].kernels == CONFIGS["paper"].kernels
