import sys

import pytest

from gradnap.corpus import lexicon
from gradnap.corpus.lexicon import Lexicon, cmudict_phones, strip_stress
from gradnap.defaults import PHONEMES


@pytest.mark.parametrize(
    ("symbol", "phone"), [("AH0", "AH"), ("EY1", "EY"), ("OW2", "OW"), ("t", "T"), ("SH", "SH")]
)
def test_strip_stress(symbol, phone):
    assert strip_stress(symbol) == phone


def test_cmudict_first_pronunciation_without_stress():
    # cmudict: tomato  T AH0 M EY1 T OW2 (first of two)
    assert cmudict_phones("tomato") == ("T", "AH", "M", "EY", "T", "OW")
    assert cmudict_phones("TOMATO") == ("T", "AH", "M", "EY", "T", "OW")
    assert cmudict_phones("xqzvbnk") is None


class FakeG2P:
    """Spells each letter as one phone; counts calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, word):
        self.calls.append(word)
        letters = {"x": "K", "q": "S", "z": "Z", "v": "V", "b": "B", "n": "N", "k": "K"}
        # Stress digits, silence and unknown symbols are dropped by the lexicon.
        return ["SIL"] + [letters.get(c, "AH1") for c in word] + ["_", "xx"]


def test_lexicon_prefers_cmudict():
    g2p = FakeG2P()
    pron = Lexicon(g2p=g2p).lookup("tomato")
    assert pron.source == "cmudict"
    assert pron.phones == ("T", "AH", "M", "EY", "T", "OW")
    assert g2p.calls == []


def test_lexicon_falls_back_to_g2p_and_filters_symbols():
    g2p = FakeG2P()
    lex = Lexicon(g2p=g2p)
    pron = lex.lookup("xqzvbnk")
    assert pron.source == "g2p"
    assert pron.phones == ("K", "S", "Z", "V", "B", "N", "K")
    assert all(p in PHONEMES for p in pron.phones)
    assert lex.lookup("XQZVBNK") == pron  # case-insensitive and cached
    assert g2p.calls == ["xqzvbnk"]


def test_lexicon_strips_apostrophes_at_word_ends():
    pron = Lexicon(g2p=None).lookup("'tomato'")
    assert pron is not None and pron.phones == ("T", "AH", "M", "EY", "T", "OW")


def test_lexicon_without_fallback_returns_none():
    assert Lexicon(g2p=None).lookup("xqzvbnk") is None


def test_lexicon_g2p_only():
    g2p = FakeG2P()
    assert Lexicon(g2p=g2p, use_cmudict=False).lookup("tomato").source == "g2p"


def test_lexicon_survives_failing_or_empty_g2p(caplog):
    def broken(word):
        raise RuntimeError("boom")

    assert Lexicon(g2p=broken).lookup("xqzvbnk") is None
    assert "boom" in caplog.text
    assert Lexicon(g2p=lambda w: ["SIL"]).lookup("xqzvbnk") is None


def test_lexicon_rejects_bad_g2p_argument():
    with pytest.raises(ValueError, match="g2p"):
        Lexicon(g2p="espeak")


def test_default_g2p_is_none_without_espeak(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradnap.corpus.espeak", None)  # import fails
    assert lexicon.default_g2p() is None
    assert Lexicon().g2p is None


def test_default_g2p_is_espeak():
    pron = Lexicon().lookup("gradnap")  # in no dictionary
    assert pron is not None and pron.source == "g2p"
    assert pron.phones[:3] == ("G", "R", "AE")
