import numpy as np
import pytest
import torch

from gradnap.errors import GradnapError
from gradnap.method.accumulators import GroupingSums, chunk_stats
from gradnap.method.examples import select_examples
from gradnap.method.profiles import (
    dataset_mean,
    gradnap_profile,
    nap_profile,
    navai_profile,
    neuron_std,
)
from gradnap.method.windows import align, recrop

B = 3  # blank index of the tiny 4-class outputs below


def probs_of(pred, k=4):
    """Softmax-like output (K, T') whose greedy prediction is ``pred``."""
    p = torch.full((k, len(pred)), 0.1)
    p[pred, torch.arange(len(pred))] = 0.7
    return p


# --- examples -------------------------------------------------------------------------------


def test_select_examples_modes():
    pred = [B, 0, 0, B, 0, 1, 1, B, 2]
    p = probs_of(pred)
    frames, classes = select_examples(p, "nonblank", blank=B)
    assert frames.tolist() == [1, 2, 4, 5, 6, 8]
    assert classes.tolist() == [0, 0, 0, 1, 1, 2]
    frames, classes = select_examples(p, "all", blank=B)
    assert frames.tolist() == list(range(9)) and classes.tolist() == pred
    # first of each run of equal non-blank predictions; a blank separates runs of "0"
    frames, classes = select_examples(p, "first", blank=B)
    assert frames.tolist() == [1, 4, 5, 8]
    assert classes.tolist() == [0, 0, 1, 2]


def test_select_examples_rejects_unknown_mode():
    with pytest.raises(GradnapError, match="nonblank"):
        select_examples(probs_of([0, 1]), "every")


# --- alignment ------------------------------------------------------------------------------


def whole(grads):
    """Whole-layer window: grads (n, C, T), start 0."""
    return grads, torch.zeros(grads.shape[0], dtype=torch.int64)


def test_align_input_first_maximum_and_crop():
    T = 6
    x = torch.arange(2 * T, dtype=torch.float32).reshape(2, T)  # (F=2, T)
    g = torch.zeros(1, 2, T)
    g[0, 0, 2] = 1.0
    g[0, 1, 2] = -2.0  # |S| sum at t=2: 3
    g[0, 0, 4] = 3.0  # |S| sum at t=4: 3 (tie: the first wins)
    a = align(x, *whole(g), 3, input_layer=True)
    assert a.centre.tolist() == [2]
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


# --- accumulation ---------------------------------------------------------------------------


def test_chunk_stats_sorts_valid_positions_and_counts_ranks():
    act = torch.tensor([[1.0, 0.0, 3.0, 2.0]])  # (C=1, T=4)
    g = torch.zeros(1, 1, 4)
    g[0, 0, 0] = 1.0  # t* = 0, W = 3 -> positions -1, 0, 1
    a = align(act, *whole(g), 3, input_layer=True)
    s = chunk_stats(a)
    assert s.count.tolist() == [[0.0, 1.0, 1.0]]
    assert s.sorted[0, 0].tolist() == [1.0, 0.0, 0.0]
    assert s.sorted_count.tolist() == [[1.0, 1.0, 0.0]]
    assert s.sq.tolist() == [[1.0]]
    g[0, 0, 2] = 5.0  # t* = 2 -> positions 1, 2, 3: sorted 3, 2, 0
    s = chunk_stats(align(act, *whole(g), 3, input_layer=True))
    assert s.sorted[0, 0].tolist() == [3.0, 2.0, 0.0]
    assert s.sorted_count.tolist() == [[1.0, 1.0, 1.0]]
    assert chunk_stats(a, naps=False).sorted is None


def random_stats(n, C=3, W=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    act = torch.rand(1, C, 20, generator=gen)[0]
    g = torch.randn(n, C, 20, generator=gen)
    return chunk_stats(align(act, *whole(g), W, input_layer=False))


def test_grouping_sums_chunking_and_merge_are_additive():
    labels = ["a", "b", None, "a", "c", "b", "a"]
    s = random_stats(len(labels))
    one = GroupingSums("g", {"L": (3, 4)})
    one.add(one.group_ids(labels), {"L": s})
    two = GroupingSums("g", {"L": (3, 4)})
    part = {
        k: getattr(s, k)
        for k in ("act", "grad", "count", "sq", "sorted", "sorted_count")  # rows 0..2, 3..6
    }
    for rows in (slice(0, 3), slice(3, 7)):
        sub = type(s)(**{k: v[rows] for k, v in part.items()})
        two.add(two.group_ids(labels[rows]), {"L": sub})
    assert one.labels == two.labels == ["a", "b", "c"]
    assert one.unlabelled == two.unlabelled == 1
    a, b = one.to_arrays(), two.to_arrays()
    assert a["labels"].tolist() == b["labels"].tolist()
    for k in set(a) - {"labels"}:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6, err_msg=k)
    assert a["examples"].tolist() == [3, 2, 1]
    # merge by label, whatever the order of first appearance: the same examples permuted
    perm = [4, 0, 1, 2, 3, 5, 6]
    rev = GroupingSums("g", {"L": (3, 4)})
    rev_stats = type(s)(**{k: v[perm] for k, v in part.items()})
    rev.add(rev.group_ids([labels[i] for i in perm]), {"L": rev_stats})
    assert rev.labels == ["c", "a", "b"]
    merged = GroupingSums("g", {"L": (3, 4)})
    merged.merge(one)
    merged.merge(rev)
    m = merged.to_arrays()
    assert merged.labels == ["a", "b", "c"] and merged.unlabelled == 2
    for k in ("examples", "L/act_sum", "L/grad_sum", "L/count", "L/sorted_sum", "L/act_sqsum"):
        np.testing.assert_allclose(m[k], 2 * a[k], rtol=1e-6, err_msg=k)
    # a round trip through plain arrays keeps everything
    back = GroupingSums.from_arrays("g", a, unlabelled=1)
    for k, v in back.to_arrays().items():
        assert np.array_equal(v, a[k]), k


def test_reorder_keeps_sums_per_label():
    s = random_stats(4)
    gs = GroupingSums("g", {"L": (3, 4)})
    gs.add(gs.group_ids(["x", "y", "x", "y"]), {"L": s})
    before = gs.to_arrays()
    gs.reorder(["z", "y", "x"])
    after = gs.to_arrays()
    assert after["labels"].tolist() == ["z", "y", "x"]
    assert after["examples"].tolist() == [0, 2, 2]
    np.testing.assert_array_equal(after["L/act_sum"][2], before["L/act_sum"][0])
    np.testing.assert_array_equal(after["L/act_sum"][0], 0.0)


# --- profiles from sums -----------------------------------------------------------------------


def test_gradnap_profile_by_hand():
    act_sum = np.array([[2.0, 6.0, 0.0]])  # (C=1, W=3), counts 2, 2, 0
    grad_sum = np.array([[-1.0, 4.0, 0.0]])
    count = np.array([2, 2, 0])
    mean = np.array([[0.5, 1.0, 7.0]])
    # Ā = [1, 3, (no data: M)], Ḡ = [-0.5, 2, 0] -> mask [0.25, 1, 0]
    p = gradnap_profile(act_sum, grad_sum, count, mean)
    np.testing.assert_allclose(p, [[0.5 * 0.25, 2.0 * 1.0, 0.0]])
    np.testing.assert_allclose(navai_profile(act_sum, count, mean), [[0.5, 2.0, 0.0]])


def test_gradnap_profile_zero_gradient_is_zero_not_nan():
    p = gradnap_profile(np.ones((2, 3)), np.zeros((2, 3)), np.array([1, 1, 1]), np.zeros((2, 3)))
    assert np.array_equal(p, np.zeros((2, 3)))


def test_dataset_mean_uses_per_position_counts():
    act_sum = np.array([[[2.0, 0.0]], [[4.0, 3.0]]])  # (G=2, C=1, W=2)
    count = np.array([[2, 0], [2, 1]])
    np.testing.assert_allclose(dataset_mean(act_sum, count), [[1.5, 3.0]])


def test_nap_profile_and_neuron_std():
    # one neuron, values 1, 3 at two valid positions: mean 2, std 1
    std = neuron_std(np.array([[1.0, 3.0]]), np.array([10.0]), np.array([1, 1]))
    np.testing.assert_allclose(std, [1.0])
    p = nap_profile(np.array([[6.0, 2.0]]), np.array([2, 2]), np.array([[2.0, 0.5]]), std)
    np.testing.assert_allclose(p, [[1.0, 0.5]])
    dead = nap_profile(np.ones((1, 2)), np.array([1, 1]), np.zeros((1, 2)), np.zeros(1))
    assert np.array_equal(dead, np.zeros((1, 2)))
