"""The collector: known answers, engines and windows, broken utterances (gradnap.method.collector)."""

import itertools
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from gradnap.corpus import PhoneSpan
from gradnap.errors import GradnapError
from gradnap.method.collector import model_geometry
from gradnap.method.result import merge_results
from gradnap.method.run import GradNAP
from helpers import (
    LAYERS,
    FrameEngine,
    assert_same_sums,
    gradnap_of,
    items,
    parity,
    small_data,
    small_model,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel"),
    pytest.mark.usefixtures("one_thread"),
]


def conv(cin, cout, k, weight, **kw):
    c = nn.Conv1d(cin, cout, k, bias=False, **kw)
    with torch.no_grad():
        c.weight.copy_(torch.tensor(weight, dtype=torch.float32))
    return c


def test_known_answer_input_layer_linear_model():
    # logit_0 = x, logit_1 (blank) = -x: examples are the frames with x > 0, and the
    # sensitivity of logit_0 at frame tau is 1 at input position tau and 0 elsewhere.
    model = nn.Sequential(conv(1, 2, 3, [[[0, 1, 0]], [[0, -1, 0]]], padding=1))
    x = torch.tensor([[1.0, -2.0, 3.0, 4.0]])  # examples tau = 0 (even), 2 (even), 3 (odd)
    nap = GradNAP(
        model, ["input"], target="logit", groupings=parity, blank=1, min_count=0,
        engine=FrameEngine(model, ["input"], "logit"),
    )  # fmt: skip
    r = nap.collect(items([x]), progress=False)
    assert r.counts("parity") == {"even": 2, "odd": 1}
    # windows (W = 3, centred on t* = tau): tau 0 -> [-, 1, -2]; 2 -> [-2, 3, 4]; 3 -> [3, 4, -]
    # M = [0.5, 8/3, 1]; Ā_even = [-2, 2, 1]; Ā_odd = [3, 4, (no data)]; Ḡ = [0, 1, 0]
    np.testing.assert_allclose(r.profile("input", "even"), [[0, 2 - 8 / 3, 0]], atol=1e-12)
    np.testing.assert_allclose(r.profile("input", "odd"), [[0, 4 - 8 / 3, 0]], atol=1e-12)
    np.testing.assert_allclose(r.navai("even"), [[-2.5, 2 - 8 / 3, 0]], atol=1e-12)
    np.testing.assert_allclose(r.navai("odd"), [[2.5, 4 - 8 / 3, 0]], atol=1e-12)
    np.testing.assert_allclose(r.dataset_mean("input", "parity"), [[0.5, 8 / 3, 1]])
    # NAPs: sorted windows [1, -2, -], [4, 3, -2], [4, 3, -]; neuron std over the 7 values
    std = np.sqrt(292) / 7
    np.testing.assert_allclose(r.nap("input", "even"), [[-0.5 / std, -5 / 6 / std, 0]])
    np.testing.assert_allclose(r.nap("input", "odd"), [[1 / std, 5 / 3 / std, 0]])
    ax = r.axes("input")
    assert ax.offsets.tolist() == [-1, 0, 1] and ax.offsets_ms.tolist() == [-8.0, 0.0, 8.0]
    assert r.layer_info("input").width_source == "cone"


def test_known_answer_hidden_layer_alignment():
    # A = relu(x); logit_0[tau] = A[tau-1] + 2 A[tau] + A[tau+1]; logit_1 (blank) = 0.5
    c2 = conv(1, 2, 3, [[[1, 2, 1]], [[0, 0, 0]]], padding=1)
    c2.bias = nn.Parameter(torch.tensor([0.0, 0.5]))
    model = nn.Sequential(conv(1, 1, 1, [[[1.0]]]), nn.ReLU(), c2)
    x = torch.tensor([[0.0, 1, 5, 0, 0, 0, 2, -3]])  # A = [0, 1, 5, 0, 0, 0, 2, 0]
    nap = GradNAP(
        model, ["1"], target="logit", groupings=("grapheme", parity), blank=1, min_count=0,
        engine=FrameEngine(model, ["1"], "logit"), naps=False,
    )  # fmt: skip
    r = nap.collect(items([x]), progress=False)
    # examples tau = 0 1 2 3 5 6 7 (tau 4 is blank); t* = argmax |S| * A over the cone:
    # 1 2 2 2 6 6 6. Windows of A and S (W = 3) by hand:
    A = {
        0: [0, 1, 5],
        1: [1, 5, 0],
        2: [1, 5, 0],
        3: [1, 5, 0],
        5: [0, 2, 0],
        6: [0, 2, 0],
        7: [0, 2, 0],
    }
    S = {
        0: [2, 1, 0],
        1: [2, 1, 0],
        2: [1, 2, 1],
        3: [0, 1, 2],
        5: [2, 1, 0],
        6: [1, 2, 1],
        7: [0, 1, 2],
    }
    M = np.mean([A[t] for t in A], axis=0)
    for label, taus in (("even", [0, 2, 6]), ("odd", [1, 3, 5, 7])):
        a = np.mean([A[t] for t in taus], axis=0)
        g = np.abs(np.mean([S[t] for t in taus], axis=0))
        np.testing.assert_allclose(r.profile("1", label), [(a - M) * g / g.max()], atol=1e-12)
        np.testing.assert_allclose(r.profile("1", label, kind="gradient"), [g], atol=1e-12)
    assert r.counts("grapheme") == {"a": 7}
    assert r.profile("1", "a").tolist() == [[0.0, 0.0, 0.0]]  # one group: Ā = M


def test_cone_and_whole_layer_windows_give_identical_profiles():
    model = small_model()
    geom = model_geometry(FrameEngine(model, LAYERS), LAYERS)
    assert geom is not None and geom[1] == {"input": 0, "1": 1, "3": 2}
    whole = gradnap_of(model, FrameEngine(model, LAYERS)).collect(small_data(), progress=False)
    cone = gradnap_of(model, FrameEngine(model, LAYERS, cone=geom)).collect(
        small_data(), progress=False
    )
    for k, v in whole.arrays.items():
        assert np.array_equal(v, cone.arrays[k]), k  # same gradients, same arithmetic
    assert [whole.layer_info(n).width for n in LAYERS] == [geom[0].cone_width(i) for i in range(3)]


@pytest.mark.parametrize("kind", ["cone", "autograd"])
def test_real_engines_match_the_reference(kind):
    model = small_model()
    ref = gradnap_of(model, FrameEngine(model, LAYERS)).collect(small_data(), progress=False)
    got = gradnap_of(model, kind).collect(small_data(), progress=False)
    assert_same_sums(ref, got, rtol=1e-4)


def test_unknown_layer_names_are_rejected_with_the_valid_ones():
    with pytest.raises(GradnapError, match=r"'nope'.*valid names.*input.*0.*1.*2.*3.*4"):
        GradNAP(small_model(), ["input", "nope"])


class ShiftedReLU(nn.Module):
    """An activation the chain extractor does not know: no known geometry."""

    def forward(self, x):
        return torch.relu(x - 0.1)


def test_estimated_windows_for_a_model_without_known_geometry():
    reference = small_model()
    model = small_model()
    model[1], model[3] = ShiftedReLU(), ShiftedReLU()
    assert model_geometry(FrameEngine(model, LAYERS), LAYERS) is None
    nap = GradNAP(model, LAYERS, engine=FrameEngine(model, LAYERS), examples="all", blank=4)
    r = nap.collect(small_data(), progress=False)
    geom = model_geometry(FrameEngine(reference, LAYERS), LAYERS)[0]
    for i, name in enumerate(LAYERS):
        info = r.layer_info(name)
        assert info.width_source == "estimated"
        assert info.width == geom.cone_width(i)
        assert info.jump == pytest.approx(geom.jump(i))
    clock = r.meta.clock
    assert clock.stride == 2.0 and clock.offset == pytest.approx(geom.centre(0, 3))
    # a given width wins over the estimate
    nap = GradNAP(model, LAYERS, engine=FrameEngine(model, LAYERS), blank=4, window={"3": 3})
    assert nap.collect(small_data(3), progress=False).layer_info("3").width == 3


class Centred(nn.Module):
    """Subtracts the utterance mean: every output frame depends on the whole input."""

    def forward(self, x):
        return x - x.mean(dim=2, keepdim=True)


def test_window_estimation_failure_is_fatal_unless_widths_are_given():
    model = small_model()
    model.insert(0, Centred())  # layers shift by one: "2" and "4" are the ReLUs
    layers = ["input", "2", "4"]
    nap = GradNAP(model, layers, engine=FrameEngine(model, layers), examples="all", blank=4)
    with pytest.raises(GradnapError, match="cannot estimate the window widths"):
        nap.collect(small_data(), progress=False)  # a configuration error, not skipped
    nap = GradNAP(
        model, layers, engine=FrameEngine(model, layers), examples="all", blank=4,
        window={"input": 13, "2": 5, "4": 1},
    )  # fmt: skip
    r = nap.collect(small_data(), progress=False)
    assert r.meta.progress.skipped == 0
    assert [r.layer_info(n).width for n in layers] == [13, 5, 1]


def test_broken_utterances_are_skipped_and_counted():
    model = small_model()
    good = small_data(3)
    bad = [
        (SimpleNamespace(id="nan"), torch.full((6, 20), float("nan"))),
        (SimpleNamespace(id="flat"), torch.randn(20)),
        (SimpleNamespace(id="bins"), torch.randn(5, 20)),
        "not a pair",
    ]
    data = good[:1] + bad + good[1:]
    r = gradnap_of(model, FrameEngine(model, LAYERS)).collect(data, progress=False)
    p = r.meta.progress
    assert (p.utterances, p.skipped) == (3, 4)
    msgs = " | ".join(r.meta.problems)
    for word in (
        "nan: features contain NaN",
        "flat: features must be (F, T)",
        "bins: 5 feature bins",
        "item 4",
    ):
        assert word in msgs
    clean = gradnap_of(model, FrameEngine(model, LAYERS)).collect(good, progress=False)
    assert_same_sums(r, clean, rtol=0)


def test_min_count_leaves_groups_out_and_reports_them():
    model = small_model()
    r = gradnap_of(model, FrameEngine(model, LAYERS), min_count=1000).collect(
        small_data(), progress=False
    )
    counts = r.counts("parity")
    assert r.groups("parity") == [] and r.left_out("parity") == dict(sorted(counts.items()))
    assert "left out: even" in r.summary()
    assert r.profiles("1", "parity") == {}
    with pytest.raises(GradnapError, match="min_count 1000"):
        r.profile("1", "even")
    assert set(r.profiles("1", "parity", min_count=0)) == {"even", "odd"}
    n = counts["even"]
    assert r.groups("parity", min_count=n) == (["even"] if counts["odd"] < n else ["even", "odd"])


def test_the_result_does_not_depend_on_the_collector_threads():
    model = small_model()
    one = gradnap_of(model, FrameEngine(model, LAYERS), threads=1).collect(
        small_data(), progress=False
    )
    three = gradnap_of(model, FrameEngine(model, LAYERS), threads=3).collect(
        small_data(), progress=False
    )
    assert set(one.arrays) == set(three.arrays)
    for k, v in one.arrays.items():
        assert np.array_equal(v, three.arrays[k]), k  # bit for bit


def test_examples_without_sensitivity_are_counted_as_flat():
    """An output layer of zero weights: no example depends on any layer, every score is
    flat, and the tie rule (docs/method.md §1.3) decides every t* with a choice."""
    model = small_model()
    with torch.no_grad():
        model[-1].weight.zero_()
    r = gradnap_of(model, FrameEngine(model, LAYERS)).collect(small_data(), progress=False)
    p = r.meta.progress
    assert p.ties == p.flat == {"input": p.examples, "1": p.examples}  # layer 3: a
    # one-position cone (a kernel-1 convolution) leaves no choice
    assert f"input {p.ties['input']} ({p.flat['input']} flat)" in r.summary()
    sound = gradnap_of(small_model(), FrameEngine(small_model(), LAYERS))
    sound = sound.collect(small_data(), progress=False)
    assert sum(sound.meta.progress.flat.values()) == 0 and "tie rule" not in sound.summary()


def test_the_engine_is_built_once_and_checks_the_layers(monkeypatch):
    import gradnap.engine as engines

    calls = []
    real = engines.extract_chain
    monkeypatch.setattr(engines, "extract_chain", lambda *a, **k: calls.append(1) or real(*a, **k))
    nap = GradNAP(small_model(), LAYERS, groupings="grapheme", blank=4)
    assert len(calls) == 1 and nap.chain is not None and nap.engine.chain is not None


def phoned(i, x):
    """Utterance ``u<i>`` with phones of 3 input frames (24 ms) each, ``P0 .. P3`` in turn."""
    n = x.shape[1] // 3 + 1
    phones = [PhoneSpan(f"P{k % 4}", k * 0.024, (k + 1) * 0.024) for k in range(n)]
    return SimpleNamespace(id=f"u{i}", speaker="s", phones=phones), x


@pytest.mark.parametrize("label_time", ["peak", "centroid", "median", "mass", "centre+42"])
def test_label_times_read_the_phone_where_the_input_sensitivity_is(label_time):
    model = small_model()
    eng = FrameEngine(model, LAYERS)  # whole-layer windows by per-frame autograd
    gen = torch.Generator().manual_seed(3)
    data = [phoned(i, torch.randn(6, t, generator=gen)) for i, t in enumerate((27, 40, 61))]
    nap = GradNAP(
        model, LAYERS, engine=eng, groupings="phoneme", label_time=label_time,
        examples="all", blank=4, min_count=0,
    )  # fmt: skip
    got = nap.collect(data, progress=False)
    # brute force, example by example: the input sensitivity mass in the cone
    geom = eng.chain.geometry
    want: Counter = Counter()
    offsets: Counter = Counter()  # listening offsets, ms
    for utt, x in data:
        fwd = eng.forward(x)
        frames = torch.arange(fwd.probs.shape[1])
        wins = eng.sensitivities(fwd, frames, fwd.probs.argmax(0))
        lo, hi = geom.cone(frames, 0)
        for tau in frames.tolist():
            cone = range(max(int(lo[tau]), 0), min(int(hi[tau]), x.shape[1] - 1) + 1)
            mass = {t: float(wins["input"].grads[tau, :, t].abs().sum()) for t in cone}
            peak = max(cone, key=lambda t: (mass[t], -t))  # first maximum
            offsets[round((peak - geom.centre(tau, geom.num_layers)) * 8)] += 1
            centroid = sum(t * m for t, m in mass.items()) / sum(mass.values())
            cumulative = itertools.accumulate(mass[t] for t in cone)
            median = next(
                t for t, c in zip(cone, cumulative, strict=True) if c >= sum(mass.values()) / 2
            )
            shifted = geom.centre(tau, geom.num_layers) + 42 / 8  # 42 ms: never on a span edge
            phone_at = {
                t: p.phone for p in utt.phones for t in cone if p.start <= t * 0.008 < p.end
            }
            if label_time == "mass":
                per_phone: Counter = Counter()
                for t, m in mass.items():
                    per_phone[phone_at[t]] += m
                want[max(per_phone, key=per_phone.get)] += 1
            else:
                t = {"peak": peak, "centroid": centroid, "median": median}.get(label_time, shifted)
                last = utt.phones[-1]  # spans are half-open; the last one is closed
                phone = next(
                    (p.phone for p in utt.phones if p.start <= t * 0.008 < p.end),
                    last.phone if t * 0.008 == last.end else None,
                )
                want[phone] += 1
    assert got.unlabelled("phoneme") == want.pop(None, 0)
    assert got.counts("phoneme") == dict(want)
    assert got.meta.options.label_time == label_time
    assert got.meta.listening_offsets == dict(sorted(offsets.items()))
    halves = [
        GradNAP(model, LAYERS, engine=eng, groupings="phoneme", examples="all", blank=4).collect(
            data, shard=f"{i}/2", progress=False
        )
        for i in range(2)
    ]  # merged shards count the same offsets
    assert merge_results(halves).meta.listening_offsets == got.meta.listening_offsets
    if label_time != "centre+42":
        with pytest.raises(GradnapError, match="collect the 'input' layer too"):
            GradNAP(model, ["1", "3"], groupings="phoneme", label_time=label_time, blank=4)
