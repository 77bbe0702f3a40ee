import pytest
import torch
from torch import nn

from gradnap.geometry import ConvSpec, Geometry


def empirical_cone(convs, n_in, frame):
    """Input frames whose perturbation changes output ``frame`` (random positive weights)."""
    x = torch.zeros(1, convs[0].in_channels, n_in, requires_grad=True)
    y = x
    for c in convs:
        y = c(y)
    y[0, :, frame].sum().backward()
    nz = (x.grad[0].abs().sum(0) > 0).nonzero().flatten()
    return int(nz.min()), int(nz.max())


@pytest.mark.parametrize(
    "layers",
    [
        [(5, 2, 1, 2), (3, 1, 2, "same"), (4, 1, 1, "same")],
        [(48, 2, 1, 23), (7, 1, 1, "same"), (32, 1, 1, "same"), (1, 1, 1, 0)],
        [(3, 3, 1, 0), (2, 2, 1, 1)],
    ],
)
def test_geometry_matches_autograd(layers):
    torch.manual_seed(0)
    convs = []
    for k, s, d, p in layers:
        c = nn.Conv1d(2, 2, k, stride=s, dilation=d, padding=p, bias=False)
        with torch.no_grad():
            c.weight.uniform_(0.1, 1.0)
        convs.append(c)
    geom = Geometry(tuple(ConvSpec.from_conv(c) for c in convs))
    n_in = 400
    y = torch.zeros(1, 2, n_in)
    for c in convs:
        y = c(y)
    assert geom.output_length(n_in) == y.shape[-1]
    frame = y.shape[-1] // 2
    lo, hi = geom.cone(frame, 0)
    assert (lo, hi) == empirical_cone(convs, n_in, frame)
    assert geom.receptive_field(len(convs)) == hi - lo + 1


def test_empty_intermediate_layer_gives_empty_output():
    geom = Geometry((ConvSpec(5, 1, 1, 0, 0), ConvSpec(3, 1, 1, 1, 1)))
    assert geom.output_length(4) == 0  # layer 1 has no position; padding cannot revive it
    assert geom.output_length(5) == 1
