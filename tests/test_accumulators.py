import numpy as np
import torch

from gradnap.method.accumulators import GroupingSums, chunk_stats
from gradnap.method.windows import align
from helpers import whole


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


def test_fold_of_is_a_stable_hash():
    import subprocess
    import sys

    from gradnap.method.accumulators import fold_of

    ids = [f"spk{i}-utt{i * 7}" for i in range(50)]
    here = [fold_of(u, 5) for u in ids]
    assert here == [fold_of(u, 5) for u in reversed(ids)][::-1]
    assert set(here) == set(range(5))
    code = "from gradnap.method.accumulators import fold_of; import sys; " + (
        "print(' '.join(str(fold_of(u, 5)) for u in sys.argv[1:]))"
    )
    import os

    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run(
        [sys.executable, "-c", code, *ids], capture_output=True, text=True, env=env, check=True
    )
    assert [int(x) for x in out.stdout.split()] == here


def test_per_fold_sums_add_up_to_the_totals():
    import torch

    from gradnap.method.accumulators import ChunkStats, LayerSums, totals

    rng = np.random.default_rng(0)
    one, three = LayerSums.zeros(4, 2, 3, naps=False), LayerSums.zeros(4, 2, 3, False, folds=3)
    for chunk in range(6):
        n = 5
        act = torch.from_numpy(rng.standard_normal((n, 2, 3)).astype(np.float32))
        stats = ChunkStats(act, act * 2, torch.ones(n, 3), act.square().sum(2), None, None)
        groups = torch.from_numpy(rng.integers(0, 4, n))
        one.add(None, groups, stats)
        three.add(None, groups, stats, fold=chunk % 3)
    for field, a in one.fields().items():
        assert three.fields()[field].shape[1] == 3
        np.testing.assert_array_equal(totals(field, a), a[:, 0])
        np.testing.assert_allclose(totals(field, three.fields()[field]), a[:, 0], rtol=1e-12)
