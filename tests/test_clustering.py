import dataclasses
import math
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import silhouette_score
from torch import nn

from gradnap.analysis.clustering import (
    cluster_layers,
    cluster_profiles,
    silhouette,
    silhouette_table,
)
from gradnap.analysis.optimal_input import optimal_input, optimal_input_for_profile
from gradnap.analysis.responsiveness import responsiveness, top_neurons
from gradnap.asr.model import ModelConfig, Wav2Letter
from gradnap.defaults import CLUSTER_PERCENTILES, OPTIMAL_INPUT
from gradnap.errors import GradnapError
from gradnap.geometry import ConvSpec, Geometry
from gradnap.method.groupings import random_label_grouping

TINY = ModelConfig("tiny", (8,) * 8 + (16, 16, 29), n_features=16)


def tiny_model(seed: int = 0, scale: float = 1.0) -> Wav2Letter:
    torch.manual_seed(seed)
    model = Wav2Letter(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


# ---------------------------------------------------------------- responsiveness


def test_responsiveness_signs_on_hand_profile():
    profile = np.array(
        [
            [1.0, 2.0, -0.5],  # sum +2.5, |.| 3.5
            [-1.0, -1.0, 0.5],  # sum -1.5, |.| 2.5
            [0.0, 0.0, 0.0],
            [3.0, -3.0, 0.0],  # sum 0 -> sign 0
            [-4.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_allclose(responsiveness(profile), [3.5, -2.5, 0.0, 0.0, -4.0])
    assert top_neurons(profile, k=3).tolist() == [4, 0, 1]
    assert top_neurons(profile, k=10).tolist() == [4, 0, 1, 2, 3]


def test_top_neurons_ties_go_to_lower_index():
    profile = np.array([[1.0], [-2.0], [2.0], [1.0], [-1.0]])
    assert top_neurons(profile, k=5).tolist() == [1, 2, 0, 3, 4]
    with pytest.raises(GradnapError):
        top_neurons(profile, k=0)
    with pytest.raises(GradnapError):
        responsiveness(np.zeros(3))


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


# ---------------------------------------------------------------- chance level


def test_random_label_grouping_seeded_order_free_and_distributed():
    g = random_label_grouping({"a": 3.0, "b": 1.0, "never": 0.0}, seed=7)
    frames = list(range(4000))
    labels = [g("utt-1", f, 5) for f in frames]
    # same labels whatever the order of the calls and the predicted class
    assert [g("utt-1", f, 0) for f in reversed(frames)] == labels[::-1]
    counts = Counter(labels)
    assert counts["never"] == 0
    # binomial(4000, 0.75): sd ~ 27
    assert abs(counts["a"] - 3000) < 150

    @dataclasses.dataclass
    class Utt:
        id: str

    assert g(Utt("utt-1"), 12, 3) == labels[12]
    other_seed = random_label_grouping({"a": 3.0, "b": 1.0, "never": 0.0}, seed=8)
    assert [other_seed("utt-1", f) for f in frames] != labels
    other_utt = [g("utt-2", f) for f in frames]
    assert other_utt != labels
    assert pickle.loads(pickle.dumps(g))("utt-1", 99) == labels[99]
    assert g.__name__ == "chance"
    assert random_label_grouping(["x"], name="chance_phoneme").__name__ == "chance_phoneme"
    uniform = random_label_grouping(["x", "y"])
    assert set(uniform("u", f) for f in range(200)) == {"x", "y"}
    for bad in ([], ["x", "x"], {"x": -1.0}, {"x": 0.0}):
        with pytest.raises(GradnapError):
            random_label_grouping(bad)


# ---------------------------------------------------------------- optimal input


def test_optimizer_lowers_its_loss_when_responses_dominate():
    # Weights scaled so the response term, not the regulariser, dominates the loss
    # (on a random model at PyTorch's init scale the 15/RF L1 term wins: see docs).
    model = tiny_model(scale=4.0)
    profile = np.zeros((8, 5))
    profile[2] = [0, 1, 2, 1, 0]  # r > 0: maximised
    profile[5] = [0, -1, -3, -1, 0]  # r < 0: minimised
    profile[6] = [0, 0, 1, 0, 0]
    res = optimal_input_for_profile(model, "layer4", profile, k=3)
    assert res.neurons.tolist() == [5, 2, 6]
    assert res.signs.tolist() == [-1.0, 1.0, 1.0]
    assert res.losses.shape == (OPTIMAL_INPUT.steps + 1,)
    assert res.losses[-1] < res.losses[0]
    assert (res.signs * res.pre_end).sum() > (res.signs * res.pre_start).sum()


def test_optimizer_without_regularisation_drives_each_neuron_its_way():
    model = tiny_model()
    cfg = dataclasses.replace(OPTIMAL_INPUT, l1=0.0, l2=0.0)
    res = optimal_input(model, "layer2", [1, 4], [1, -1], config=cfg)
    assert res.losses[-1] < res.losses[0]
    assert res.pre_end[0] > res.pre_start[0]
    assert res.pre_end[1] < res.pre_start[1]
    np.testing.assert_allclose(res.losses[-1], -(res.pre_end[0] - res.pre_end[1]), rtol=1e-5)


@pytest.mark.parametrize("layer,index", [("layer1", 1), ("layer3", 3), ("layer9.conv", 9)])
def test_optimal_input_covers_the_receptive_field_without_padding(layer, index):
    model = tiny_model()
    res = optimal_input(model, layer, [0, 3])
    geom = model.geometry
    assert res.x.shape == (TINY.n_features, geom.receptive_field(index))
    assert res.layer_index == index
    assert res.times_ms.shape == (res.x.shape[1],)
    assert res.times_ms[0] == pytest.approx(-res.times_ms[-1])
    # The same x inside a long random context gives the same pre-activation: nothing of
    # the padding or of other frames reached the centre position.
    t = 60
    lo, hi = geom.span(t, t, index, 0)
    big = torch.randn(1, TINY.n_features, 400)
    big[0, :, lo : hi + 1] = torch.as_tensor(res.x, dtype=torch.float32)
    y = big
    with torch.no_grad():
        for i in range(index - 1):
            y = model[i](y)
        pre = model[index - 1].conv(y)[0, [0, 3], t].numpy()
    np.testing.assert_allclose(pre, res.pre_end, rtol=1e-4, atol=1e-6)


def test_optimal_input_is_seeded_and_leaves_the_model_alone():
    model = tiny_model()
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    a = optimal_input(model, "layer2", [0], seed=3)
    b = optimal_input(model, "layer2", [0], seed=3)
    c = optimal_input(model, "layer2", [0], seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    assert model.training
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, q) and p.grad is None


def test_optimal_input_layer_errors():
    model = tiny_model()
    with pytest.raises(GradnapError, match="layer1, layer1.conv, layer1.relu, layer2"):
        optimal_input(model, "layer99", [0])
    with pytest.raises(GradnapError, match="valid layer names"):
        optimal_input(model, "input", [0])
    # an activation module means the convolution before it
    np.testing.assert_array_equal(
        optimal_input(model, "layer2.relu", [0]).x, optimal_input(model, "layer2", [0]).x
    )
    lead = nn.Sequential(nn.Identity(), nn.Conv1d(3, 2, 3), nn.ReLU())
    with pytest.raises(GradnapError, match="'0'.*valid layer names: 1, 2$"):
        optimal_input(lead, "0", [0])
    assert optimal_input(lead, "2", [1]).x.shape == (3, 3)
    with pytest.raises(GradnapError, match="out of range"):
        optimal_input(model, "layer2", [8])
    with pytest.raises(GradnapError, match="signs"):
        optimal_input(model, "layer2", [0, 1], [1])


def test_optimal_input_general_model_without_geometry():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(6, 4, 5, stride=2, padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Conv1d(4, 4, 3, dilation=2, padding="same"), nn.Tanh()),
        nn.Conv1d(4, 3, 1),
    )
    res = optimal_input(
        model, "2", [1, 2], [1, -1], config=dataclasses.replace(OPTIMAL_INPUT, l1=0, l2=0)
    )
    geom = Geometry((ConvSpec.from_conv(model[0]), ConvSpec.from_conv(model[2][0])))
    assert res.x.shape == (6, geom.receptive_field(2))
    assert res.layer_index == 2
    assert res.losses[-1] < res.losses[0]
