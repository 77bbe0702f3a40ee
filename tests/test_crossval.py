"""Cross-validated distances and the cluster score (docs/method.md §6)."""

import itertools

import numpy as np
import pytest

from gradnap.analysis.crossval import (
    cluster_score,
    crossval_distances,
    fold_profiles,
    fold_profiles_from_sums,
    score_difference,
)
from gradnap.errors import GradnapError
from gradnap.method.accumulators import fold_of

K, C, W = 5, 4, 3
CROSSFIT = ("pair", "pair_shared", "crossfit", "crossfit_shared")
SIZES = [4, 7, 12, 30, 60, 150, 400, 1000, 3000, 5, 9, 20, 80, 250, 2000]


def _fold_sums(sizes, examples):
    """Per-fold sums (G, K, c, w) of activations and sensitivities and counts (G, K, w);
    ``examples(i, n)`` gives group ``i``'s ``n`` examples ``(x, s)``, each ``(n, c, w)``."""
    parts = []
    for i, n in enumerate(sizes):
        folds = np.array([fold_of(f"g{i}-u{j}", K) for j in range(n)])
        x, s = examples(i, n)
        parts.append(
            [(x[folds == f].sum(0), s[folds == f].sum(0), (folds == f).sum()) for f in range(K)]
        )
    act = np.array([[a for a, _, _ in p] for p in parts], dtype=np.float64)
    grad = np.array([[g for _, g, _ in p] for p in parts], dtype=np.float64)
    count = np.array([[[m] * act.shape[-1] for _, _, m in p] for p in parts], dtype=np.int64)
    return act, grad, count


def _sums(sizes, rng, offsets=None, grad_noise=0.1):
    """Per-fold sums (G, K, C, W) of noise examples; ``offsets`` (G, C, W) planted means;
    sensitivities ``1 + grad_noise ε``."""

    def examples(i, n):
        x = rng.standard_normal((n, C, W))
        if offsets is not None:
            x += offsets[i]
        return x, 1.0 + grad_noise * rng.standard_normal((n, C, W))

    return _fold_sums(sizes, examples)


def _labels(n):
    return [f"g{i:02d}" for i in range(n)]


@pytest.mark.parametrize(
    "kind, mask",
    [("activation", "crossfit"), *(("gradnap", m) for m in (*CROSSFIT, "same_fold"))],
)
def test_pure_noise_is_zero_for_any_mix_of_sizes(kind, mask):
    dists, scores = [], []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        fp = fold_profiles_from_sums(_labels(len(SIZES)), *_sums(SIZES, rng), kind=kind, mask=mask)
        cv = crossval_distances(fp)
        iu = np.triu_indices(len(SIZES), 1)
        dists.append(np.nanmean(cv.crossval[iu]))
        scores.append(cluster_score(fp).score)
    for values in (np.array(dists), np.array(scores)):
        se = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean()) < 4 * se + 1e-12, (values.mean(), se)
    # the plain distance is far from 0: the noise term the cross-validation removes
    assert np.nanmean(cv.plain[iu]) > 10 * abs(np.mean(dists))


def _correlated_sums(rng, c=16, w=4, mu=1.5):
    """Per-fold sums of random-label groups (sizes ``SIZES``) whose per-example
    sensitivity is the activation plus noise, ``s = a + 0.5 ε`` with ``a ~ N(mu, 1)``: in
    a group's mean, a high activation goes with a large mask (as in a softmax output)."""

    def examples(i, n):
        x = mu + rng.standard_normal((n, c, w))
        return x, x + 0.5 * rng.standard_normal((n, c, w))

    return _fold_sums(SIZES, examples)


def test_crossfitted_mask_removes_the_bias_of_a_mask_correlated_with_activations():
    """Random labels, group sizes 4..3000, sensitivity correlated with activation per
    example: with the mask of the profile's own fold, ``E P_a^i = E[(Ā_a^i − M^i) |Ḡ_a^i|]
    / max > 0`` shrinks with the group size, so groups of different sizes differ in
    expectation and the score sits above 0 (measured over 16 draws: score +0.090 ± 0.014,
    signal share +0.163 ± 0.012); with cross-fitted masks both are at 0: −0.001 ± 0.004 and
    −0.000 ± 0.005 (each group's masks of two other folds), +0.008 ± 0.022 and
    +0.008 ± 0.022 (one pooled mask for both folds, noisier); with pair masks
    +0.005 ± 0.010 and −0.000 ± 0.007 (two other folds, the default), +0.009 ± 0.019 and
    +0.004 ± 0.015 (pooled)."""
    labels = _labels(len(SIZES))
    iu = np.triu_indices(len(SIZES), 1)
    got: dict[str, tuple[list, list]] = {m: ([], []) for m in ("same_fold", *CROSSFIT)}
    for seed in range(16):
        sums = _correlated_sums(np.random.default_rng(seed))
        for mask, (scores, shares) in got.items():
            fp = fold_profiles_from_sums(labels, *sums, kind="gradnap", mask=mask)
            scores.append(cluster_score(fp).score)
            cv = crossval_distances(fp)
            shares.append(np.nanmean(cv.crossval[iu]) / np.nanmean(cv.plain[iu]))
    for mask, (scores, shares) in got.items():
        for values in (np.array(scores), np.array(shares)):
            mean, se = values.mean(), values.std(ddof=1) / np.sqrt(values.size)
            if mask == "same_fold":
                assert mean > 0.05 and mean > 4 * se, (mask, mean, se)
            else:
                assert abs(mean) < 2 * se, (mask, mean, se)


def test_pair_mask_puts_identical_groups_of_any_sizes_at_zero():
    """Two clusters of groups of sizes 4..3000: activations ``N(±1, 1)`` (the same mean in
    a cluster, away from the dataset mean), sensitivities ``N(1, 1)`` for all. With
    per-group masks ``E[|Ḡ| / max|Ḡ|]`` depends on the group size (noise inflates ``|Ḡ|``
    and its maximum), so identical groups of different sizes sit apart: mean distance
    within a cluster +0.151 ± 0.005 for the cross-fitted masks (between clusters 1.60).
    One pair mask ``(m_a + m_b) / 2`` for both groups leaves ``(Ā_a − Ā_b) ⊙ m_ab``, 0 in
    expectation whenever the activation means are equal: −0.002 ± 0.001 (between 1.65)."""
    labels = _labels(len(SIZES))
    odd = np.arange(len(SIZES)) % 2
    same = np.equal.outer(odd, odd) & ~np.eye(len(SIZES), dtype=bool)
    offsets = np.where(odd, 1.0, -1.0)[:, None, None] * np.ones((len(SIZES), C, W))
    within: dict[str, list[float]] = {m: [] for m in CROSSFIT}
    between: dict[str, list[float]] = {m: [] for m in CROSSFIT}
    for seed in range(8):
        sums = _sums(SIZES, np.random.default_rng(seed), offsets, grad_noise=1.0)
        for mask in CROSSFIT:
            cv = crossval_distances(fold_profiles_from_sums(labels, *sums, mask=mask)).crossval
            within[mask].append(np.nanmean(cv[same]))
            between[mask].append(np.nanmean(cv[~same & ~np.eye(len(SIZES), dtype=bool)]))
    for mask, values in within.items():
        v = np.array(values)
        mean, se = v.mean(), v.std(ddof=1) / np.sqrt(v.size)
        assert np.mean(between[mask]) > 1.0, mask
        if mask.startswith("pair"):
            assert abs(mean) < 3 * se and abs(mean) < 0.01, (mask, mean, se)
        else:
            assert mean > 0.1 and mean > 10 * se, (mask, mean, se)


def test_unknown_mask_is_refused():
    with pytest.raises(GradnapError, match="mask 'pooled'"):
        fold_profiles_from_sums(
            _labels(3), *_sums([5, 6, 7], np.random.default_rng(0)), mask="pooled"
        )


def test_noise_score_within_its_reported_uncertainty():
    rng = np.random.default_rng(99)
    fp = fold_profiles_from_sums(_labels(len(SIZES)), *_sums(SIZES, rng), kind="activation")
    s = cluster_score(fp)
    assert np.isfinite(s.uncertainty) and s.uncertainty > 0
    assert abs(s.score) < 4 * s.uncertainty
    assert s.n_groups == len(SIZES) and s.n_folds == K and len(s.per_split) == 25


@pytest.mark.parametrize("kind", ["activation", "gradnap"])
def test_planted_clusters_give_a_clearly_positive_score(kind):
    rng = np.random.default_rng(1)
    sizes = [40, 300, 80, 1000, 60, 500, 30, 200]
    offsets = np.zeros((len(sizes), C, W))
    offsets[::2] += 0.8  # two clusters: even and odd groups
    fp = fold_profiles_from_sums(_labels(len(sizes)), *_sums(sizes, rng, offsets), kind=kind)
    s = cluster_score(fp)
    assert s.score > 0.5 and s.score > 5 * s.uncertainty
    assert crossval_distances(fp).signal_share > 0.5


def _drop_fold(sums, f):
    keep = [i for i in range(K) if i != f]
    return [s[:, keep] for s in sums]


@pytest.mark.parametrize(
    "kind, mask", [("activation", "crossfit"), *(("gradnap", m) for m in CROSSFIT)]
)
def test_jackknife_replicates_are_the_scores_without_each_fold(kind, mask):
    """Also for cross-fitted GradNAPs: a replicate's masks pool only its ``K − 1`` folds."""
    rng = np.random.default_rng(5)
    sizes = [40, 300, 80, 1000, 60, 500, 30, 200]
    offsets = np.zeros((len(sizes), C, W))
    offsets[::2] += 0.3
    sums = _sums(sizes, rng, offsets)
    labels = _labels(len(sizes))
    s = cluster_score(fold_profiles_from_sums(labels, *sums, kind=kind, mask=mask))
    assert len(s.jackknife) == K
    for f in range(K):
        fp = fold_profiles_from_sums(labels, *_drop_fold(sums, f), kind=kind, mask=mask)
        assert s.jackknife[f] == pytest.approx(cluster_score(fp).score, rel=1e-12)
    r = np.array(s.jackknife)
    assert s.uncertainty == pytest.approx(np.sqrt((K - 1) / K * ((r - r.mean()) ** 2).sum()))


def test_score_difference_is_jackknifed_over_the_same_replicates():
    rng = np.random.default_rng(6)
    sizes = [40, 300, 80, 1000, 60, 500, 30, 200]
    offsets = np.zeros((len(sizes), C, W))
    offsets[::2] += 0.5
    labels = _labels(len(sizes))
    sums = _sums(sizes, rng, offsets)
    a = cluster_score(fold_profiles_from_sums(labels, *sums, kind="activation"))
    b = cluster_score(fold_profiles_from_sums(labels, *sums, kind="gradient"))
    d = score_difference(a, b)
    assert d.difference == pytest.approx(a.score - b.score)
    r = np.array(a.jackknife) - np.array(b.jackknife)
    assert d.uncertainty == pytest.approx(np.sqrt((K - 1) / K * ((r - r.mean()) ** 2).sum()))
    # a score minus itself: exactly 0 with no uncertainty (adding the variances would not)
    same = score_difference(a, a)
    assert same.difference == 0 and same.uncertainty == 0
    # scores of results with different folds do not subtract
    k4 = cluster_score(fold_profiles_from_sums(labels, *_drop_fold(sums, 0), kind="activation"))
    with pytest.raises(GradnapError, match="not from one result"):
        score_difference(a, k4)


def test_crossval_distance_equals_brute_force_per_example():
    rng = np.random.default_rng(3)
    sizes = [6, 9, 11]
    act, grad, count = _sums(sizes, rng)
    fp = fold_profiles_from_sums(_labels(3), act, grad, count, kind="activation")
    cv = crossval_distances(fp).crossval
    # brute force: per fold the group means of its examples minus the fold's mean of all
    # examples, then the average of the products over ordered fold pairs i != j
    prof = {}
    for f in range(K):
        m = act[:, f].sum(0) / count[:, f].sum(0)[None, :]
        for g in range(3):
            if count[g, f].sum() > 0:
                prof[g, f] = (act[g, f] / count[g, f][None, :] - m).ravel()
    for a, b in itertools.combinations(range(3), 2):
        terms = [
            (prof[a, i] - prof[b, i]) @ (prof[a, j] - prof[b, j]) / (C * W)
            for i in range(K)
            for j in range(K)
            if i != j and all(k in prof for k in ((a, i), (b, i), (a, j), (b, j)))
        ]
        assert cv[a, b] == pytest.approx(np.mean(terms), rel=1e-10)
        assert cv[b, a] == pytest.approx(cv[a, b], rel=1e-12)


def test_crossfitted_gradnap_distance_equals_brute_force_per_example():
    """d(a, b) of cross-fitted GradNAPs from the examples themselves: for folds i, j, k, l
    all different, the profile of fold i is (mean activation of the group's examples in
    fold i − mean of all fold i's examples) times the mask of fold k (|mean sensitivity|
    of the group's examples in fold k over its maximum), that of fold j masked by fold l;
    d is the mean over all such (i, j, k, l) of the product. With
    ``mask="crossfit_shared"`` both are masked by the examples of the three folds other
    than i and j. With ``mask="pair"`` (``"pair_shared"``) both groups' profiles are masked
    by the mean of the two groups' masks of fold k (l; or of the three other folds)."""
    rng = np.random.default_rng(4)
    sizes = [9, 14, 20]
    ex = []  # per group: (fold, activation (C, W), sensitivity (C, W)) per example
    for n in sizes:
        x = 1.0 + rng.standard_normal((n, C, W))
        ex.append((rng.integers(0, K, n), x, x + 0.5 * rng.standard_normal((n, C, W))))
    act = np.stack([[x[f == k].sum(0) for k in range(K)] for f, x, _ in ex])
    grad = np.stack([[s[f == k].sum(0) for k in range(K)] for f, _, s in ex])
    count = np.stack([[np.full(W, (f == k).sum()) for k in range(K)] for f, _, _ in ex])
    fp = fold_profiles_from_sums(_labels(3), act, grad, count, mask="crossfit")
    assert fp.crossfit and not fp.pair
    cv = crossval_distances(fp).crossval
    other = {
        mask: crossval_distances(
            fold_profiles_from_sums(_labels(3), act, grad, count, mask=mask)
        ).crossval
        for mask in ("crossfit_shared", "pair", "pair_shared")
    }
    default = fold_profiles_from_sums(_labels(3), act, grad, count)
    assert default.mask == "pair" and default.pair
    plain = crossval_distances(default).plain

    def deviation(g, k):
        everyone = np.concatenate([x[f == k] for f, x, _ in ex])
        f, x, _ = ex[g]
        return x[f == k].mean(0) - everyone.mean(0)

    def mask(g, folds):
        f, _, s = ex[g]
        sel = np.isin(f, folds)
        if not sel.any():
            return np.zeros((C, W))
        m = np.abs(s[sel].mean(0))
        return m / m.max()

    def product(a, b, i, j, mi, mj, pair=False):
        ma, mb = (mask(a, mi), mask(b, mi)), (mask(a, mj), mask(b, mj))
        if pair:  # one mask for both groups: the mean of theirs
            ma, mb = ((ma[0] + ma[1]) / 2,) * 2, ((mb[0] + mb[1]) / 2,) * 2
        pi = deviation(a, i) * ma[0] - deviation(b, i) * ma[1]
        pj = deviation(a, j) * mb[0] - deviation(b, j) * mb[1]
        return (pi * pj).sum() / (C * W)

    for a, b in itertools.combinations(range(3), 2):
        terms: dict[str, list[float]] = {m: [] for m in ("crossfit", *other)}
        for i, j in itertools.permutations(range(K), 2):
            if not all(((ex[g][0] == k).any()) for g in (a, b) for k in (i, j)):
                continue
            rest = [f for f in range(K) if f not in (i, j)]
            terms["crossfit_shared"].append(product(a, b, i, j, rest, rest))
            terms["pair_shared"].append(product(a, b, i, j, rest, rest, pair=True))
            for k, m in itertools.permutations(rest, 2):
                terms["crossfit"].append(product(a, b, i, j, [k], [m]))
                terms["pair"].append(product(a, b, i, j, [k], [m], pair=True))
        assert cv[a, b] == pytest.approx(np.mean(terms["crossfit"]), rel=1e-10)
        assert cv[b, a] == pytest.approx(cv[a, b], rel=1e-12)
        for mask_name, d in other.items():
            assert d[a, b] == pytest.approx(np.mean(terms[mask_name]), rel=1e-10), mask_name
            assert d[b, a] == pytest.approx(d[a, b], rel=1e-12), mask_name
        # the plain distance of the pair masks: all examples, one pooled pair mask
        everything = list(range(K))
        x = np.concatenate([x for _, x, _ in ex]).mean(0)
        diff = (ex[a][1].mean(0) - x) - (ex[b][1].mean(0) - x)
        pair_mask = (mask(a, everything) + mask(b, everything)) / 2
        assert plain[a, b] == pytest.approx(((diff * pair_mask) ** 2).sum() / (C * W), rel=1e-10)


def test_result_without_folds_is_refused():
    class R:
        folds = 1

    with pytest.raises(GradnapError, match="collect again"):
        fold_profiles(R(), "1", "grapheme")


def _windowed_sums(rng, sizes, width, inside, offsets):
    """Per-fold sums ``(G, K, C, width)`` of Gaussian examples whose sensitivity is 0
    outside the columns ``inside``: their GradNAPs are 0 there."""
    g = len(sizes)
    act = np.zeros((g, K, C, width))
    grad = np.zeros((g, K, C, width))
    count = np.zeros((g, K, width), dtype=np.int64)
    for i, n in enumerate(sizes):
        for f, m in enumerate(rng.multinomial(n, np.full(K, 1.0 / K))):
            act[i, f] = m * offsets[i] + np.sqrt(m) * rng.standard_normal((C, width))
            grad[i, f] = (m + 0.3 * np.sqrt(m) * rng.standard_normal((C, width))) * inside
            count[i, f] = m
    return act, grad, count


def test_stored_layout_scores_like_full_resolution_where_the_gradnaps_live():
    """The default layout keeps the window's central span at full resolution: when the
    GradNAPs are 0 outside it (no sensitivity there), its score is the full-resolution
    score exactly (the per-element normalisation D cancels), also through the result
    file's float16 codec to 1e-3; equal time bins (format 3) give another score."""
    from gradnap.method.accumulators import (
        FORMAT3_LAYOUT,
        FoldLayout,
        decode_fold_arrays,
        encode_fold_arrays,
        pool_columns,
    )

    rng = np.random.default_rng(11)
    width, sizes = 40, [40, 300, 80, 1000, 60, 500, 30, 200]
    idx = FoldLayout().columns(width)
    inside = np.isin(idx, np.flatnonzero(np.bincount(idx[idx >= 0]) == 1))  # single columns
    assert 4 <= inside.sum() < width
    offsets = np.zeros((len(sizes), C, width))
    offsets[::2] += 0.3 * rng.standard_normal((C, width))  # two clusters, varying in time
    sums = _windowed_sums(rng, sizes, width, inside, offsets)
    labels = _labels(len(sizes))
    full = cluster_score(fold_profiles_from_sums(labels, *sums))
    assert full.score > 2 * full.uncertainty
    stored = [pool_columns(s, idx) for s in sums]
    span = cluster_score(fold_profiles_from_sums(labels, *stored))
    assert span.score == pytest.approx(full.score, rel=1e-9)
    np.testing.assert_allclose(span.jackknife, full.jackknife, rtol=1e-9)
    keys = ("sums/g/L/fold_act", "sums/g/L/fold_grad", "sums/g/L/fold_count")
    back = decode_fold_arrays(encode_fold_arrays(dict(zip(keys, stored, strict=True))))
    f16 = cluster_score(fold_profiles_from_sums(labels, *(back[k] for k in keys)))
    assert f16.score == pytest.approx(full.score, abs=1e-3)
    binned = [pool_columns(s, FORMAT3_LAYOUT.columns(width)) for s in sums]
    other = cluster_score(fold_profiles_from_sums(labels, *binned))
    assert abs(other.score - full.score) > 0.01
