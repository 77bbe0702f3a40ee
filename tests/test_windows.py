import numpy as np
import pytest
import torch

from gradnap.method.windows import Positions, align, recrop
from helpers import whole


def test_align_input_maximum_and_crop():
    T = 6
    x = torch.arange(2 * T, dtype=torch.float32).reshape(2, T)  # (F=2, T)
    g = torch.zeros(1, 2, T)
    g[0, 0, 2] = 1.0
    g[0, 1, 2] = -2.0  # |S| sum at t=2: 3
    g[0, 0, 4] = 3.0  # |S| sum at t=4: 3 (tie, both 1 from the window centre 3: the earlier)
    a = align(x, *whole(g), 3, input_layer=True)
    assert a.centre.tolist() == [2]
    assert (a.ties, a.flat) == (1, 0)
    assert a.act[0].tolist() == x[:, 1:4].tolist()
    assert a.grad[0].tolist() == g[0, :, 1:4].tolist()
    assert a.valid.tolist() == [[True, True, True]]


def test_align_layer_weights_sensitivity_by_activation():
    # |S| is largest at t=1 but the activation there is 0: t* is where |S| * A peaks
    act = torch.tensor([[0.0, 0.0, 1.0, 4.0, 0.5]])  # (C=1, T=5)
    g = torch.tensor([[[0.0, 9.0, 2.0, 1.0, 3.0]]])  # scores 0, 0, 2, 4, 1.5
    a = align(act, *whole(g), 1, input_layer=False)
    assert a.centre.tolist() == [3]
    assert a.act[0, 0].tolist() == [4.0] and a.grad[0, 0].tolist() == [1.0]
    # the input rule ignores activations: argmax of |S| alone
    assert align(act, *whole(g), 1, input_layer=True).centre.tolist() == [1]


@pytest.mark.parametrize("width", [3, 4])
def test_align_edges_and_even_width(width):
    T = 5
    act = torch.arange(1.0, T + 1.0)[None]  # (1, T): 1..5
    g = torch.zeros(2, 1, T)
    g[0, 0, 0] = 1.0  # t* = 0 (utterance start)
    g[1, 0, T - 1] = 1.0  # t* = T-1 (utterance end)
    a = align(act, *whole(g), width, input_layer=False)
    assert a.centre.tolist() == [0, T - 1]
    off = np.arange(width) - width // 2  # even W: t* is the right one of the middle two
    pos0, pos1 = off, T - 1 + off
    assert a.valid[0].tolist() == ((pos0 >= 0) & (pos0 < T)).tolist()
    assert a.valid[1].tolist() == ((pos1 >= 0) & (pos1 < T)).tolist()
    expected0 = [float(p + 1) if 0 <= p < T else 0.0 for p in pos0]
    assert a.act[0, 0].tolist() == expected0
    # the gradient column of t* holds the seed
    assert a.grad[0, 0, width // 2] == 1.0 and a.grad[1, 0, width // 2] == 1.0
    assert float(a.grad.sum()) == 2.0


def test_align_cone_window_equals_whole_layer_window():
    torch.manual_seed(0)
    C, T, W = 3, 12, 5
    act = torch.rand(C, T)
    lo = torch.tensor([-2, 0, 4, 9])  # cone starts (may be negative) for 4 examples
    hi = lo + W - 1
    whole_g = torch.zeros(4, C, T)
    cone_g = torch.zeros(4, C, W)
    for i in range(4):
        for j in range(W):
            p = int(lo[i]) + j
            if 0 <= p < T:
                v = torch.randn(C)
                whole_g[i, :, p] = v
                cone_g[i, :, j] = v
    for input_layer in (False, True):
        a = align(act, *whole(whole_g), W, input_layer=input_layer, search=(lo, hi))
        b = align(act, cone_g, lo, W, input_layer=input_layer, search=(lo, hi))
        assert a.centre.tolist() == b.centre.tolist()
        for name in ("act", "grad", "valid"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_align_takes_frames_innermost_windows_as_they_are():
    """The cone engine hands out (n, C, We) views of (C, We, n) buffers: same result."""
    gen = torch.Generator().manual_seed(3)
    C, T, We, n = 3, 12, 5, 4
    act = torch.rand(C, T, generator=gen)
    buf = torch.randn(C, We, n, generator=gen)  # frames innermost
    view = buf.permute(2, 0, 1)  # (n, C, We), not contiguous
    assert not view.is_contiguous()
    start = torch.tensor([-2, 0, 4, 9])
    for input_layer in (False, True):
        a = align(act, view, start, 4, input_layer=input_layer)
        b = align(act, view.contiguous(), start, 4, input_layer=input_layer)
        assert a.centre.tolist() == b.centre.tolist()
        for name in ("act", "grad", "valid"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        # the crop really is the window shifted to the centre (zero outside it)
        for i in range(n):
            for j in range(4):
                col = int(a.centre[i]) - 2 + j - int(start[i])
                want = view[i, :, col] if 0 <= col < We and a.valid[i, j] else torch.zeros(C)
                assert torch.equal(a.grad[i, :, j], want)


def test_align_searches_only_the_cone_inside_the_utterance():
    # negative activations (no ReLU): padding (score 0) must never win over real positions
    act = -torch.ones(1, 6)
    g = torch.zeros(1, 1, 8)  # cone window starting at -2: positions -2..5
    g[0, 0, 2:] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # scores -1..-6 at t=0..5
    start = torch.tensor([-2])
    a = align(act, g, start, 3, input_layer=False, search=(start, start + 7))
    assert a.centre.tolist() == [0]
    # a larger score outside the search range is ignored
    act = torch.ones(1, 6)
    a = align(act, g, start, 3, input_layer=False, search=(torch.tensor([0]), torch.tensor([2])))
    assert a.centre.tolist() == [2]


def test_recrop_cuts_a_whole_layer_window_to_the_cone():
    g = torch.arange(1.0, 7.0).reshape(1, 1, 6)  # positions 0..5 hold 1..6
    out = recrop(g, torch.tensor([0]), torch.tensor([-2]), 4)  # positions -2..1
    assert out.tolist() == [[[0.0, 0.0, 1.0, 2.0]]]
    out = recrop(g, torch.tensor([0]), torch.tensor([3]), 4)  # positions 3..6
    assert out.tolist() == [[[4.0, 5.0, 6.0, 0.0]]]


@pytest.mark.parametrize("cone", [5, 6])
def test_align_flat_score_leaves_the_example_at_the_cone_centre(cone):
    """No sensitivity anywhere in the cone (or the same score everywhere): t* is the cone's
    centre (the right one of two middle positions), or the nearest position inside the
    utterance, not the first position."""
    T = 12
    act = torch.ones(2, T)
    lo = torch.tensor([3, T - 2, 2])  # the second cone runs past the end: 2 positions inside
    hi = lo + cone - 1
    g = torch.zeros(3, 2, cone)
    g[2, 0] = 0.5  # the same score at every position: flat too
    a = align(act, g, lo, 3, input_layer=False, search=(lo, hi))
    mid = lo + cone // 2
    assert a.centre.tolist() == [int(mid[0]), T - 1, int(mid[2])]
    assert (a.ties, a.flat) == (3, 3)
    # one clear maximum: the argmax, and no tie counted
    g[0, 1, 0] = 1.0
    a = align(act, g, lo, 3, input_layer=False, search=(lo, hi))
    assert int(a.centre[0]) == int(lo[0]) and (a.ties, a.flat) == (2, 2)


def test_align_ties_go_to_the_position_nearest_the_cone_centre():
    act = torch.ones(1, 20)
    lo = torch.tensor([0, 0, 0])
    hi = lo + 8  # cone of 9 positions, centre 4
    g = torch.zeros(3, 1, 9)
    g[:, 0, 1] = 1.0
    g[0, 0, 6] = 1.0  # a tie at 1 and 6: 6 is nearer the centre
    g[1, 0, 6] = 1.0 - 1e-7  # no tie: the maximum wins, however close the runner-up
    g[2, 0, 7] = 1.0  # a tie at 1 and 7, both 3 from the centre: the earlier
    a = align(act, g, lo, 3, input_layer=False, search=(lo, hi))
    assert a.centre.tolist() == [6, 1, 1]
    assert (a.ties, a.flat) == (2, 0)


def test_positions_channel_major_windows_and_square_sums():
    gen = torch.Generator().manual_seed(5)
    act = torch.randn(3, 9, generator=gen)
    pos = Positions(act, 2)
    assert not pos.nonnegative and Positions(act.relu()).nonnegative
    for start in (torch.tensor([-3, -2, -1, 0, 1]), torch.tensor([4, -1, 8, 2])):
        want = pos.windows(start, 4)  # (n, C, 4), zero outside the utterance
        for j in range(4):
            p = start + j
            inside = (p >= 0) & (p < 9)
            assert torch.equal(want[:, :, j][inside], act[:, p[inside]].T)
            assert bool((want[:, :, j][~inside] == 0).all())
        # evenly spaced starts: a strided view, else gathered: the same windows
        assert torch.equal(pos.windows_by_channel(start, 4), want.transpose(0, 1))
        sq = pos.square_sums(start, 4)
        assert sq.dtype == torch.float64
        torch.testing.assert_close(sq, want.double().square().sum(2))


def test_align_squared_sums_match_the_cropped_activations():
    gen = torch.Generator().manual_seed(6)
    act = torch.randn(4, 15, generator=gen)
    g = torch.randn(6, 4, 15, generator=gen)
    for width in (3, 6):
        a = align(act, *whole(g), width, input_layer=False)
        torch.testing.assert_close(a.sq, a.act.double().square().sum(2))
        assert not a.nonnegative


def test_align_into_kept_buffers_equals_fresh_arrays():
    # the collector crops every chunk into the same arrays: a later, smaller chunk whose
    # windows reach past the utterance's ends must not see the earlier chunk's values
    from gradnap.method.windows import Buffers

    gen = torch.Generator().manual_seed(3)
    act = torch.randn(4, 30, generator=gen)
    buffers = Buffers()
    for n, shift in ((6, 8), (3, -6), (6, 14), (2, 30)):
        g = torch.randn(n, 4, 9, generator=gen)
        start = torch.arange(n) * 4 + shift - 4
        a = align(act, g, start, 7, input_layer=False)
        b = align(act, g, start, 7, input_layer=False, buffers=buffers)
        for field in ("act", "grad", "valid", "centre", "sq"):
            assert torch.equal(getattr(a, field), getattr(b, field)), (n, shift, field)
    assert b.act.dtype == torch.float32
    b = align(act.double(), g, start, 7, input_layer=False, buffers=buffers)
    assert b.act.dtype == torch.float64  # the windows keep the activations' precision
