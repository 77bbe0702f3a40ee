import random

import numpy as np
import pytest

from gradnap.corpus.phones import (
    ESPEAK_ACCENT_OVERRIDES,
    ESPEAK_TO_ARPABET,
    FLITE_TO_ARPABET,
    build_spans,
    espeak_table,
    limit_peak,
    strip_stress,
)
from gradnap.corpus.timings import PhoneSpan, check_spans
from gradnap.defaults import PHONE_SET, PHONEMES


@pytest.mark.parametrize(
    "name,table",
    [("flite", FLITE_TO_ARPABET), ("espeak", ESPEAK_TO_ARPABET)]
    + [(f"espeak:{acc}", tab) for acc, tab in ESPEAK_ACCENT_OVERRIDES.items()],
)
def test_tables_map_into_the_phone_set(name, table):
    for symbol, phones in table.items():
        assert isinstance(phones, tuple), symbol
        for ph in phones:
            assert ph in PHONE_SET, f"{name}: {symbol} -> {ph}"


def test_tables_cover_all_39_phonemes():
    for table in (FLITE_TO_ARPABET, ESPEAK_TO_ARPABET):
        produced = {ph for phones in table.values() for ph in phones}
        assert set(PHONEMES) <= produced


def test_dropped_symbols_are_only_markers():
    # Symbols mapped to nothing are merged into a neighbour: only eSpeak's markers.
    assert {s for s, p in FLITE_TO_ARPABET.items() if not p} == set()
    assert {s for s, p in ESPEAK_TO_ARPABET.items() if not p} == {";", "|", "||"}


def test_accent_tables():
    assert espeak_table("en-us")["A@"] == ("AA", "R")
    assert espeak_table("en-us+f2")["A@"] == ("AA", "R")  # the variant does not matter
    assert espeak_table("en-gb-x-rp+f3")["A@"] == ("AA",)  # non-rhotic
    assert espeak_table("en-gb-x-rp")["U@"] == ("AO",)
    assert espeak_table("en-gb-scotland+m4")["U"] == ("UW",)
    assert espeak_table("EN-US")["0"] == ("AA",)
    assert (
        strip_stress("'oU") == "oU" and strip_stress(",aI@") == "aI@" and strip_stress("_:") == "_:"
    )


def test_build_spans_known_answer_with_split():
    phones = [("pau", 0.0), ("hh", 0.1), ("el", 0.2), ("pau", 0.4)]
    spans, unmapped = build_spans(phones, 0.5, FLITE_TO_ARPABET)
    assert spans == [
        PhoneSpan("SIL", 0.0, 0.1),
        PhoneSpan("HH", 0.1, 0.2),
        PhoneSpan("AH", 0.2, 0.3),  # "el" split in equal halves
        PhoneSpan("L", 0.3, 0.4),
        PhoneSpan("SIL", 0.4, 0.5),
    ]
    assert not unmapped


def test_build_spans_leading_silence_markers_and_unknown_symbols():
    table = {"a": ("AA",), "b": ("B",), "_": ("SIL",), ";": ()}
    phones = [("a", 0.05), (";", 0.1), ("zz", 0.15), ("b", 0.2), ("_", 0.3), ("_", 0.35)]
    spans, unmapped = build_spans(phones, 0.4, table)
    assert spans == [
        PhoneSpan("SIL", 0.0, 0.05),  # before the first symbol
        PhoneSpan("AA", 0.05, 0.2),  # marker and unknown symbol merged into it
        PhoneSpan("B", 0.2, 0.3),
        PhoneSpan("SIL", 0.3, 0.4),  # two pauses merged
    ]
    assert unmapped == {"zz": 1}


def test_build_spans_leading_marker_merges_into_next():
    spans, _ = build_spans([(";", 0.0), ("b", 0.1)], 0.3, {"b": ("B",), ";": ()})
    assert spans == [PhoneSpan("B", 0.0, 0.3)]


def test_build_spans_rounds_clamps_and_drops_zero_length():
    table = {"a": ("AA",), "b": ("B",), "c": ("K",)}
    # b starts before a (non-monotone), c is shorter than a millisecond, times overshoot
    phones = [("a", 0.1), ("b", 0.09), ("c", 0.2), ("a", 0.2004), ("b", 0.7)]
    spans, _ = build_spans(phones, 0.5, table)
    check_spans(spans, 0.5)
    assert [s.phone for s in spans] == ["SIL", "B", "AA"]
    assert spans[-1].end == 0.5


def test_build_spans_random_sequences_always_valid():
    rng = random.Random(0)
    symbols = list(ESPEAK_TO_ARPABET) + ["??", "x!"]
    for _ in range(300):
        n = rng.randint(0, 12)
        duration = rng.uniform(0.01, 3.0)
        times = sorted(rng.uniform(-0.1, duration + 0.1) for _ in range(n))
        phones = [(rng.choice(symbols), t) for t in times]
        spans, unmapped = build_spans(phones, duration, ESPEAK_TO_ARPABET)
        check_spans(spans, round(duration, 3))
        assert all(
            b.phone != "SIL" or a.phone != "SIL" for a, b in zip(spans, spans[1:], strict=False)
        )
        assert set(unmapped) <= {"??", "x!"}


def test_limit_peak():
    x = np.array([0.0, 0.5, -2.0], dtype=np.float32)
    y = limit_peak(x)
    assert y.dtype == np.float32 and np.isclose(np.abs(y).max(), 0.95)
    assert np.allclose(y / y[2], x / x[2])
    quiet = np.array([0.1, -0.2], dtype=np.float32)
    assert np.array_equal(limit_peak(quiet), quiet)
