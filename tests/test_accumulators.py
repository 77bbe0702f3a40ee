import numpy as np
import pytest
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
        for k in ("act", "grad", "count", "sq", "ascending", "sorted_count")  # rows 0..2, 3..6
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
    back = GroupingSums.from_arrays("g", a, {"L": (3, 4)}, unlabelled=1)
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


def _fold_run(spec, chunks=6, seed=0):
    import torch

    from gradnap.method.accumulators import ChunkStats, GroupingSums

    rng = np.random.default_rng(seed)
    gs = GroupingSums("g", {"L": (2, 7)}, spec)
    for chunk in range(chunks):
        n = 5
        act = torch.from_numpy(rng.standard_normal((n, 2, 7)).astype(np.float32))
        count = torch.from_numpy((rng.random((n, 7)) < 0.8).astype(np.float32))
        stats = ChunkStats(act * count[:, None], act * 2, count, act.square().sum(2), None, None)
        gs.add(
            gs.group_ids(rng.choice(["a", "b", "c", "d"], n).tolist()),
            {"L": stats},
            chunk % spec.folds,
        )
    return gs


def test_fold_bins_are_centred_on_the_alignment_column():
    from gradnap.method.accumulators import fold_bins

    for width in (1, 2, 7, 32, 74, 194):
        for bins in (1, 4, 6):
            idx = fold_bins(width, bins)
            b = -(-width // bins)
            centre = idx[width // 2]
            inner = np.flatnonzero(idx == centre) - width // 2  # offsets of the centre bin
            assert inner.min() >= -(b // 2) and inner.max() <= b - 1 - b // 2
            assert np.all(np.diff(idx) >= 0) and idx[0] == 0
            assert np.bincount(idx).max() <= b and idx.max() + 1 <= min(bins + 1, width)
    assert fold_bins(194, 6).max() + 1 == 7


@pytest.mark.parametrize("bins", [0, 1, 6])
@pytest.mark.parametrize("span", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_fold_layout_keeps_the_central_span_at_full_resolution(bins, span):
    from gradnap.errors import GradnapError
    from gradnap.method.accumulators import FORMAT3_LAYOUT, FoldLayout, fold_bins

    if bins == 0 and span == 0:
        with pytest.raises(GradnapError, match="no column"):
            FoldLayout(bins, span)
        return
    layout = FoldLayout(bins, span)
    for width in (1, 2, 7, 32, 74, 194):
        idx = layout.columns(width)
        kept = idx[idx >= 0]
        # bins numbered 0..B-1 in column order, every bin contiguous
        assert kept[0] == 0 and np.all(np.diff(kept) >= 0) and np.all(np.diff(kept) <= 1)
        assert np.all(np.diff(np.flatnonzero(idx >= 0)) == 1) or bins > 0
        n = min(width, max(1, round(span * width))) if span else 0
        single = np.flatnonzero(np.bincount(kept) == 1)
        fine = np.flatnonzero(np.isin(idx, single))
        if n:  # the span: n single columns around t* (offsets -(n//2) .. n-1-n//2)
            lo = width // 2 - n // 2
            assert set(range(lo, lo + n)) <= set(fine.tolist())
        if bins == 0:
            assert (idx >= 0).sum() == n
        else:
            assert (idx >= 0).all()
        assert layout.size(width) == kept.max() + 1
    assert np.array_equal(FoldLayout(bins or 1, 1.0).columns(50), np.arange(50))
    np.testing.assert_array_equal(FORMAT3_LAYOUT.columns(194), fold_bins(194, 6))


def test_fold_layout_rejects_bad_settings():
    from gradnap.errors import GradnapError
    from gradnap.method.accumulators import FoldLayout

    for bins, span in ((-1, 0.5), (6, 1.5), (6, -0.1)):
        with pytest.raises(GradnapError, match="layout"):
            FoldLayout(bins, span)


@pytest.mark.parametrize("layout", [(3, 0.0), (0, 0.45), (1, 0.3)])
def test_per_fold_sums_are_the_pooled_totals(layout):
    from gradnap.method.accumulators import FoldLayout, SumsSpec, pool_columns

    layout = FoldLayout(*layout)
    totals = _fold_run(SumsSpec(naps=False)).layers["L"]
    folded = _fold_run(SumsSpec(naps=False, folds=3, layout=layout)).layers["L"]
    idx = layout.columns(7)
    assert totals.fold_act is None
    assert folded.fold_act.shape == (8, 3, 2, idx.max() + 1)
    for name in ("act_sum", "grad_sum", "count", "act_sqsum"):
        np.testing.assert_array_equal(getattr(folded, name), getattr(totals, name))
    for fold_field, total in (
        ("fold_act", "act_sum"),
        ("fold_grad", "grad_sum"),
        ("fold_count", "count"),
    ):
        per_fold = getattr(folded, fold_field)
        np.testing.assert_allclose(
            per_fold.sum(axis=1), pool_columns(getattr(totals, total), idx), rtol=1e-12
        )


def test_per_fold_sums_alone_and_their_round_trip():
    from gradnap.errors import GradnapError
    from gradnap.method.accumulators import FoldLayout, GroupingSums, SumsSpec

    with pytest.raises(GradnapError, match="folds >= 2"):
        SumsSpec(totals=False)
    layout = FoldLayout(3, 0.0)
    alone = _fold_run(SumsSpec(naps=False, folds=3, totals=False, layout=layout))
    both = _fold_run(SumsSpec(naps=False, folds=3, layout=layout))
    arrays = alone.to_arrays()
    assert sorted(k for k in arrays if k.startswith("L/")) == [
        "L/fold_act",
        "L/fold_count",
        "L/fold_grad",
    ]
    np.testing.assert_array_equal(arrays["L/fold_act"], both.to_arrays()["L/fold_act"])
    back = GroupingSums.from_arrays("g", arrays, {"L": (2, 7)}, layout=layout, copy=True)
    assert back.spec == alone.spec
    back.merge(alone)
    np.testing.assert_array_equal(back.to_arrays()["L/fold_act"], 2 * arrays["L/fold_act"])
    with pytest.raises(GradnapError, match="bins"):
        GroupingSums.from_arrays("g", arrays, {"L": (2, 7)}, layout=FoldLayout(6, 0.0))
    with pytest.raises(GradnapError, match="different sums"):
        both.merge(alone)


def test_float16_fold_means_round_trip_within_their_precision():
    from gradnap.method.accumulators import decode_fold_arrays, encode_fold_arrays

    rng = np.random.default_rng(3)
    count = rng.integers(0, 300, (4, 5, 6))
    count[0, 0] = 0
    c = count[:, :, None, :]
    act = rng.normal(2.0, 3.0, (4, 5, 3, 6)) * c
    grad = rng.normal(0.0, 1e-5, (4, 5, 3, 6)) * c * 10.0 ** rng.integers(-4, 1, (4, 5, 3, 6))
    arrays = {
        "sums/g/L/fold_act": act,
        "sums/g/L/fold_grad": grad,
        "sums/g/L/fold_count": count,
        "sums/g/L/act_sum": act.sum(1),
        "sums/g/labels": np.array(["a", "b", "c", "d"]),
    }
    enc = encode_fold_arrays(arrays)
    assert enc["sums/g/L/fold_act"].dtype == np.float16
    assert enc["sums/g/L/fold_grad"].dtype == np.float16
    assert enc["sums/g/L/act_sum"] is arrays["sums/g/L/act_sum"]
    dec = decode_fold_arrays(enc)
    assert set(dec) == set(arrays)
    np.testing.assert_array_equal(dec["sums/g/L/fold_count"], count)
    for field, exact in (("fold_act", act), ("fold_grad", grad)):
        back = dec[f"sums/g/L/{field}"]
        assert back.dtype == np.float64
        np.testing.assert_array_equal(back[count[:, :, None, :].repeat(3, 2) == 0], 0.0)
        # every mean to float16's relative precision, even means of 1e-9 (subnormal
        # in plain float16), down to 2**-24 of its channel's largest
        top = np.abs(exact / np.maximum(c, 1)).max(axis=(0, 1, 3))[:, None]
        tol = 2.0**-11 * np.abs(exact) + 2.0**-24 * top * c
        assert np.all(np.abs(back - exact) <= tol)
    # sums (float32, float64) pass unchanged
    assert decode_fold_arrays(arrays)["sums/g/L/fold_act"] is act


def test_version_2_files_are_upgraded_to_totals_and_pooled_folds():
    from gradnap.method.accumulators import FoldLayout, pool_columns, upgrade_arrays

    rng = np.random.default_rng(1)
    v2 = {
        "sums/g/L/act_sum": rng.standard_normal((3, 4, 2, 7)),
        "sums/g/L/count": rng.integers(0, 5, (3, 4, 7)),
        "sums/g/L/act_sqsum": rng.random((3, 4, 2)),
        "sums/g/labels": np.array(["a", "b", "c"]),
    }
    layout = FoldLayout(0, 0.5)
    up = upgrade_arrays(v2, 2, layout)
    np.testing.assert_allclose(up["sums/g/L/act_sum"], v2["sums/g/L/act_sum"].sum(1))
    np.testing.assert_allclose(up["sums/g/L/act_sqsum"], v2["sums/g/L/act_sqsum"].sum(1))
    np.testing.assert_allclose(
        up["sums/g/L/fold_act"], pool_columns(v2["sums/g/L/act_sum"], layout.columns(7))
    )
    np.testing.assert_allclose(
        up["sums/g/L/fold_act"], v2["sums/g/L/act_sum"][..., 1:5]
    )  # offsets -2..1
    assert up["sums/g/L/fold_count"].shape == (3, 4, 4)
    assert "sums/g/L/fold_act" not in upgrade_arrays(
        {k: v[:, :1] if v.ndim > 1 else v for k, v in v2.items()}, 2
    )


def test_chunk_stats_with_negative_activations_past_the_edges():
    # windows reaching past the utterance: their invalid columns rank last even though
    # the valid activations are negative (a zero would otherwise sort above them)
    act = torch.tensor([[-1.0, -3.0, -2.0, 0.5]])  # (C=1, T=4)
    g = torch.zeros(2, 1, 4)
    g[0, 0, 0] = 1.0  # t* = 0: positions -1, 0, 1
    g[1, 0, 3] = 1.0  # t* = 3: positions 2, 3, 4
    s = chunk_stats(align(act, *whole(g), 3, input_layer=True))
    assert s.sorted[0, 0].tolist() == [-1.0, -3.0, 0.0]
    assert s.sorted[1, 0].tolist() == [0.5, -2.0, 0.0]
    assert s.sorted_count.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]
    # non-negative activations: the invalid zeros sort last by themselves
    s = chunk_stats(align(act.abs(), *whole(g), 3, input_layer=True))
    assert s.sorted[0, 0].tolist() == [3.0, 1.0, 0.0]
    assert s.sorted[1, 0].tolist() == [2.0, 0.5, 0.0]
    # sorted where they are (the collector, once the totals are summed): the same NAPs
    from gradnap.method.accumulators import sort_windows

    for a in (act, act.abs()):
        aligned = align(a, *whole(g), 3, input_layer=True)
        expected = chunk_stats(aligned)
        ascending, counts = sort_windows(aligned, aligned.act.numpy())
        assert ascending.data_ptr() == aligned.act.data_ptr()
        assert torch.equal(ascending, expected.ascending)
        assert torch.equal(counts, expected.sorted_count)


def test_chunk_parts_are_the_sums_of_each_group():
    from gradnap.method.accumulators import chunk_parts, chunk_rows

    labels = ["a", None, "b", "a", "c", "b", "a"]
    s = random_stats(len(labels))
    gs = GroupingSums("g", {"L": (3, 4)})
    gid = gs.group_ids(labels)
    assert chunk_rows(torch.full((3,), -1)) is None
    rows = chunk_rows(gid, fold=2)
    assert rows is not None and rows.groups.tolist() == [0, 1, 2] and rows.fold == 2
    assert rows.member.sum(0).tolist() == [3.0, 2.0, 1.0] and rows.member[1].sum() == 0
    parts = chunk_parts(s, rows.member, naps=True)
    for k, group in enumerate(rows.groups.tolist()):
        mine = [i for i, g in enumerate(gid.tolist()) if g == group]
        for field, values in (
            ("act_sum", s.act),
            ("grad_sum", s.grad),
            ("count", s.count),
            ("act_sqsum", s.sq),
            ("sorted_sum", s.sorted),
            ("sorted_count", s.sorted_count),
        ):
            torch.testing.assert_close(parts[field][k], values[mine].sum(0), msg=field)
