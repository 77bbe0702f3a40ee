import math

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import silhouette_score

from gradnap.analysis.clustering import (
    cluster_layers,
    cluster_profiles,
    silhouette,
    silhouette_table,
)
from gradnap.defaults import CLUSTER_PERCENTILES
from gradnap.errors import GradnapError

# ---------------------------------------------------------------- silhouette


def test_silhouette_hand_case():
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    labels = [1, 1, 2, 2]
    # point 0: a = 1, b = (10 + 11) / 2; point 1: a = 1, b = (9 + 10) / 2; symmetric.
    expected = ((10.5 - 1) / 10.5 + (9.5 - 1) / 9.5) / 2
    assert silhouette(pdist(X), labels) == pytest.approx(expected, abs=1e-12)
    assert silhouette(squareform(pdist(X)), labels) == pytest.approx(expected, abs=1e-12)
    assert silhouette_score(X, labels) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_silhouette_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 25))
    X = rng.normal(size=(n, 6))
    X[1] = X[0]  # duplicate points
    k = int(rng.integers(2, n))
    labels = rng.integers(0, k, size=n)
    labels[0] = k + 5  # a singleton cluster (scores 0)
    if not 2 <= len(np.unique(labels)) <= n - 1:
        labels[1:] = 0
    d = pdist(X)
    ours = silhouette(d, labels)
    assert ours == pytest.approx(
        silhouette_score(squareform(d), labels, metric="precomputed"), abs=1e-12
    )
    assert ours == pytest.approx(silhouette_score(X, labels), abs=1e-7)


# ---------------------------------------------------------------- clustering


def test_cluster_cuts_follow_percentiles_and_match_sklearn():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 4, 5)) * 3
    profiles = {f"g{i}": centres[i % 3] + rng.normal(size=(4, 5)) for i in range(15)}
    c = cluster_profiles(profiles, layer="layer3")
    X = np.stack([p.reshape(-1) for p in profiles.values()])
    d = pdist(X)
    assert c.groups == tuple(profiles)
    assert [cut.percentile for cut in c.cuts] == list(CLUSTER_PERCENTILES)
    for cut in c.cuts:
        assert cut.threshold == pytest.approx(np.percentile(d, cut.percentile))
        expected = fcluster(c.linkage, t=cut.threshold, criterion="distance")
        np.testing.assert_array_equal(cut.labels, expected)
        assert cut.n_clusters == len(np.unique(expected))
        assert cut.defined
        assert cut.silhouette == pytest.approx(silhouette_score(X, expected), abs=1e-7)
    assert c.mean_silhouette == pytest.approx(np.mean(c.scores))
    # arbitrary percentiles: low cuts give more clusters
    assert c.cut(5).n_clusters >= c.cut(95).n_clusters


def equidistant_pairs() -> dict[str, np.ndarray]:
    """Two tight pairs whose four cross distances are all equal: [1, 1, d, d, d, d]."""
    pts = np.array(
        [[0.0, 0.5, 0.0], [0.0, -0.5, 0.0], [5.0, 0.0, 0.5], [5.0, 0.0, -0.5]]
    )  # cross distance sqrt(25 + 0.5) for every pair
    return {name: p.reshape(1, 3) for name, p in zip("abcd", pts, strict=True)}


def test_undefined_cuts_are_reported_not_invented():
    profiles = equidistant_pairs()
    c = cluster_profiles(profiles, layer="deep")
    # every percentile >= 40 lands on the largest distance: one cluster
    for cut in c.cuts:
        assert cut.n_clusters == 1
        assert cut.silhouette is None and not cut.defined
        assert cut.reason == "1 cluster"
    assert c.n_defined == 0
    assert math.isnan(c.mean_silhouette)
    assert np.isnan(c.scores).all()
    assert c.to_dict()["mean_silhouette"] is None
    assert c.to_dict()["cuts"][0]["silhouette"] is None

    mixed = cluster_profiles(profiles, percentiles=(10.0, 95.0))
    low, high = mixed.cuts
    assert low.n_clusters == 2 and low.defined
    assert high.n_clusters == 1 and not high.defined
    assert mixed.n_defined == 1
    assert mixed.mean_silhouette == pytest.approx(low.silhouette)

    table = silhouette_table({"grapheme": {"deep": profiles}})
    assert "undefined (0/5)" in table.to_markdown()
    assert table.to_dict()["grapheme"]["deep"]["n_defined"] == 0


def test_silhouette_undefined_for_one_or_n_clusters():
    d = pdist(np.arange(5.0)[:, None])
    assert silhouette(d, [0, 0, 0, 0, 0]) is None
    assert silhouette(d, [0, 1, 2, 3, 4]) is None
    assert silhouette(d, [0, 0, 1, 1, 1]) is not None
    two = cluster_profiles({"a": np.zeros((2, 2)), "b": np.ones((2, 2))})
    assert two.n_defined == 0 and all(c.reason for c in two.cuts)
    none = cluster_profiles({})
    assert none.n_defined == 0 and none.cut(80).n_clusters == 0


def test_cluster_input_checks_and_layers():
    with pytest.raises(GradnapError, match="'b'"):
        cluster_profiles({"a": np.zeros((2, 3)), "b": np.zeros((3, 2))}, layer="x")
    rng = np.random.default_rng(0)
    layer_a = {g: rng.normal(size=(2, 3)) for g in "pqrst"}
    layer_b = {g: rng.normal(size=(4, 1)) for g in "pqrst"}
    with_nan = {g: v.copy() for g, v in layer_a.items()}
    with_nan["p"][0, 0] = np.nan
    out = cluster_layers({"A": layer_a, "B": layer_b, "C": with_nan})
    assert list(out) == ["A", "B", "C"]
    assert out["B"].linkage.shape == (4, 4)
    assert np.isfinite(out["C"].distances).all()


def test_silhouette_table_of_any_profile_kind_labels_it_and_clusters_the_same():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(3, 10)) * 4
    per_layer = {
        layer: {f"g{i}": (centres[i % 3] + rng.normal(size=10)).reshape(2, 5) for i in range(9)}
        for layer in ("layer1", "layer2")
    }
    nap = silhouette_table({"grapheme": per_layer}, kind="nap")
    plain = silhouette_table({"grapheme": per_layer})
    assert nap.kind == "nap" and plain.kind == "gradnap"
    expected = cluster_layers(per_layer)
    for layer, c in expected.items():
        np.testing.assert_array_equal(nap.clusterings["grapheme"][layer].scores, c.scores)
    np.testing.assert_array_equal(nap.means("grapheme"), plain.means("grapheme"))
    assert nap.to_dict() == plain.to_dict()  # the kind does not change the JSON format
