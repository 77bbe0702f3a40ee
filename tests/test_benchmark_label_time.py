"""benchmarks/label_time.py: its metrics, and the library's label times it measures, on a
hand-made utterance."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import label_time as lt  # noqa: E402

from gradnap.corpus.timings import PhoneSpan  # noqa: E402
from gradnap.method.groupings import FrameClock, label_spans, phone_index  # noqa: E402

# Input frame t sits at t * 8 ms: A = frames 0-4, B = frames 5-9, C = frames 10-15
# (the last span closed at its end, 0.128 s = frame 16, outside the 16-frame utterance).
PHONES = [PhoneSpan("A", 0.0, 0.036), PhoneSpan("B", 0.036, 0.076), PhoneSpan("C", 0.076, 0.128)]
LENGTH = 16
START = np.array([-2, 3, 6, 12])
MASS = np.array(
    [
        [9, 9, 1, 2, 3, 0],  # positions -2..3: -2, -1 outside the utterance
        [1, 0, 2, 2, 0, 5],  # positions 3..8
        [2, 2, 2, 2, 3, 0],  # positions 6..11: peak in C, most mass in B
        [0, 0, 0, 0, 7, 7],  # positions 12..17: no mass inside the utterance
    ],
    dtype=np.float64,
)
CENTRE = np.array([1.5, 5.5, 8.5, 13.5])


def test_input_mass():
    g = torch.tensor([[[1.0, -2.0, 0.0], [-3.0, 0.5, 0.0]]])  # (1, F=2, W=3)
    np.testing.assert_array_equal(lt.input_mass(g), [[4.0, 2.5, 0.0]])


def test_span_index():
    t = np.array([0.0, 0.035, 0.036, 0.1, 0.128, 0.1281, -0.001, np.nan])
    np.testing.assert_array_equal(phone_index(PHONES, t), [0, 0, 1, 2, 2, -1, -1, -1])
    np.testing.assert_array_equal(phone_index([], t[:2]), [-1, -1])


def test_evidence_of_mass_windows():
    ev = lt.evidence(MASS, START, LENGTH)
    np.testing.assert_array_equal(ev.peak, [2, 8, 10, 12])  # first maximum in the utterance
    assert np.isneginf(ev.score[0, :2]).all() and np.isneginf(ev.score[3, 4:]).all()


@pytest.mark.parametrize(
    ("definition", "offset", "expected"),
    [
        ("centre", 0.0, [0, 1, 1, 2]),
        ("peak", 0.0, [0, 1, 2, 2]),
        ("centroid", 0.0, [0, 1, 1, -1]),  # mass-weighted means 8/6, 6.5, 90/11 frames
        ("median", 0.0, [0, 1, 1, -1]),  # frames 1, 6, 8
        ("mass", 0.0, [0, 1, 1, -1]),
        ("centre+offset", 2.0, [0, 1, 2, 2]),
        ("centre+offset", 10.0, [2, 2, -1, -1]),
    ],
)
def test_label_spans(definition, offset, expected):
    clock = FrameClock(stride=1.0, offset=0.0)  # "output frame" = its centre, input frames
    label_time = lt.label_time_of(definition, offset)
    got = label_spans(label_time, PHONES, CENTRE, clock, lt.evidence(MASS, START, LENGTH))
    np.testing.assert_array_equal(got, expected)


def test_label_spans_without_phones():
    clock = FrameClock(stride=1.0, offset=0.0)
    for d in lt.DEFINITIONS:
        got = label_spans(
            lt.label_time_of(d, 1.0), [], CENTRE, clock, lt.evidence(MASS, START, LENGTH)
        )
        assert (got == -1).all(), d


def test_metrics():
    letters = ["a", "a", "b", "b"]
    assert lt.conditional_entropy(["X", "Y", "Z", "Z"], letters) == pytest.approx(0.5)
    assert lt.conditional_entropy(letters, ["X", "Y", "Z", "Z"]) == pytest.approx(0.0)
    assert lt.purity(["X", "Y", "Z", "Z"], letters) == pytest.approx(0.75)
