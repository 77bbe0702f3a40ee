import dataclasses
import pickle
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from gradnap.asr.model import CONFIGS
from gradnap.corpus import PhoneSpan
from gradnap.errors import GradnapError
from gradnap.geometry import ConvSpec, Geometry
from gradnap.method.groupings import (
    FrameClock,
    FunctionGrouping,
    GraphemeGrouping,
    InputEvidence,
    PhonemeGrouping,
    SpeakerGrouping,
    make_groupings,
    random_label_grouping,
)

CLOCK = FrameClock(stride=2.0, offset=0.0)  # output frame f is centred on input frame 2f


def utt(phones=None, speaker="slt"):
    return SimpleNamespace(id="u", speaker=speaker, phones=phones)


def test_frame_clock_from_geometry():
    # one layer, kernel 5, stride 2, left pad 1: output frame f covers input 2f-1 .. 2f+3
    geom = Geometry((ConvSpec(5, 2, 1, 1, 1),))
    clock = FrameClock.from_geometry(geom)
    assert clock.stride == 2.0 and clock.offset == 1.0
    np.testing.assert_allclose(clock.centre_seconds(np.array([0, 3])), [0.008, 7 * 0.008])
    # the project's model: output stride 2, centre of frame 0 from the receptive field
    g = CONFIGS["default"].geometry
    c = FrameClock.from_geometry(g)
    assert c.stride == 2.0 and c.offset == g.centre(0, g.num_layers)


def test_grapheme_labels():
    frames = np.arange(4)
    labels = GraphemeGrouping().labels(utt(), frames, np.array([0, 26, 28, 39]), CLOCK)
    assert labels == ["a", "_", "<b>", "39"]  # a class beyond gradnap's alphabet: its index
    # the model's labels name the classes beyond the alphabet (a vocabulary's tokens)
    model_labels = [*(str(k) for k in range(29)), "<unk>", "1"]
    (grapheme,) = make_groupings("grapheme", class_labels=model_labels)
    labels = grapheme.labels(utt(), np.arange(5), np.array([0, 28, 29, 30, 31]), CLOCK)
    assert labels == ["a", "<b>", "<unk>", "1", "31"]


def test_phoneme_at_the_frame_centre_time():
    # frames 0..4 are centred at 0, 16, 32, 48, 64 ms
    phones = (
        PhoneSpan("SIL", 0.0, 0.016),
        PhoneSpan("AH", 0.016, 0.040),
        PhoneSpan("T", 0.040, 0.048),
    )
    frames = np.arange(6)
    labels = PhonemeGrouping("centre").labels(utt(phones), frames, frames, CLOCK)
    # 16 ms is the start of AH (spans are [start, end)); 48 ms is the end of the last phone
    assert labels == ["SIL", "AH", "AH", "T", None, None]
    assert PhonemeGrouping("centre").labels(utt(None), frames, frames, CLOCK) == [None] * 6


def test_speaker_and_function_groupings():
    frames, classes = np.array([3, 4]), np.array([1, 2])
    assert SpeakerGrouping().labels(utt(speaker="awb"), frames, classes, CLOCK) == ["awb"] * 2
    seen = []

    def parity(u, frame, cls):
        seen.append((u.id, frame, cls))
        return None if frame == 4 else frame % 2

    g = FunctionGrouping("parity", parity)
    assert g.labels(utt(), frames, classes, CLOCK) == ["1", None]
    assert seen == [("u", 3, 1), ("u", 4, 2)]


def test_make_groupings_specs():
    def voiced(u, frame, cls):
        return "v"

    gs = make_groupings("grapheme, phoneme")
    assert [g.name for g in gs] == ["grapheme", "phoneme"]
    gs = make_groupings(["grapheme", voiced, ("other", voiced)])
    assert [g.name for g in gs] == ["grapheme", "voiced", "other"]
    assert [g.name for g in make_groupings({"x": voiced})] == ["x"]
    with pytest.raises(GradnapError, match="grapheme, phoneme, speaker"):
        make_groupings("grapheme,phonemes")
    with pytest.raises(GradnapError, match="repeated: grapheme"):
        make_groupings("grapheme,grapheme")
    with pytest.raises(GradnapError, match="reserved"):
        make_groupings([("all", voiced)])
    with pytest.raises(GradnapError, match="no grouping"):
        make_groupings("")


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


# --- label times --------------------------------------------------------------------------


def spans(*triples):
    return [PhoneSpan(p, s, e) for p, s, e in triples]


def test_each_label_time_on_a_hand_made_utterance():
    # input frames are 8 ms apart; phones A [0, 40 ms), B [40, 80 ms), C [80, 200 ms]
    utt = SimpleNamespace(
        id="u", phones=spans(("A", 0.0, 0.04), ("B", 0.04, 0.08), ("C", 0.08, 0.2))
    )
    clock = FrameClock(stride=2.0, offset=1.5)  # output frame 1 is centred on input 3.5 (28 ms)
    frames, classes = np.array([1, 1]), np.array([0, 0])
    # the model listens around input frames 6..9 (48..72 ms: phone B) for example 0, and
    # mostly at frame 12 (96 ms: C) with a single sharper peak at frame 2 (16 ms: A) for 1
    score = np.full((2, 14), -np.inf)
    score[0, 6:10] = [1.0, 2.0, 2.0, 1.0]
    score[1, 2] = 3.0
    score[1, 10:14] = [2.0, 2.0, 2.0, 2.0]
    evidence = InputEvidence(peak=np.array([7, 2]), score=score, start=np.array([0, 0]))
    want = {
        "centre": ["A", "A"],  # 28 ms
        "centre+40": ["B", "B"],  # 68 ms
        "centre-20": ["A", "A"],  # 8 ms
        "peak": ["B", "A"],  # 56 ms; 16 ms
        # the first frame with half the mass at or before it: 7 (56 ms); 11 (88 ms)
        "median": ["B", "C"],
        # sensitivity-weighted mean frame: 45/6 = 7.5 (60 ms); 98/11 = 8.9 (71 ms)
        "centroid": ["B", "B"],
        # B holds all of example 0's mass; C holds 8 of example 1's 11
        "mass": ["B", "C"],
    }
    for label_time, expected in want.items():
        got = PhonemeGrouping(label_time).labels(utt, frames, classes, clock, evidence)
        assert got == expected, label_time
    assert not PhonemeGrouping("centre").needs_evidence and PhonemeGrouping("mass").needs_evidence
    with pytest.raises(GradnapError, match="needs the input layer"):
        PhonemeGrouping("peak").labels(utt, frames, classes, clock)
    assert not PhonemeGrouping("centre+40").needs_evidence
    with pytest.raises(GradnapError, match="choose from median, peak, centroid, mass, centre"):
        PhonemeGrouping("middle")
    with pytest.raises(GradnapError, match="centre\\+MS"):
        PhonemeGrouping("centre+")


def test_a_label_time_outside_every_span_gives_no_label():
    utt = SimpleNamespace(id="u", phones=spans(("A", 0.1, 0.2)))
    score = np.full((1, 4), -np.inf)
    score[0, 0] = 1.0  # all the mass at input frame 0 (0 ms), before the first phone
    evidence = InputEvidence(peak=np.array([0]), score=score, start=np.array([0]))
    clock = FrameClock(stride=2.0, offset=1.5)
    for label_time in ("peak", "centroid", "median", "mass"):
        got = PhonemeGrouping(label_time).labels(utt, np.array([0]), np.array([0]), clock, evidence)
        assert got == [None], label_time
