import numpy as np
import pytest

from gradnap import GradnapError
from gradnap.corpus import espeak
from gradnap.corpus.phones import ESPEAK_ACCENT_OVERRIDES, espeak_table
from gradnap.corpus.text import vocabulary
from gradnap.corpus.timings import check_spans
from gradnap.defaults import FEATURES, PHONE_SET, SYNTH

ACCENTS = sorted({v.split("+")[0] for v in SYNTH.espeak_voices})


def test_default_voices_are_valid_and_have_tables():
    assert len(SYNTH.espeak_voices) >= 8
    for v in SYNTH.espeak_voices:
        assert espeak.check_espeak_voice(v) == v
    assert set(ACCENTS) <= set(ESPEAK_ACCENT_OVERRIDES)


@pytest.mark.parametrize(
    "voice,match",
    [("en-xx", "unknown accent"), ("en-us+nosuch", "unknown variant"), ("de", "accent")],
)
def test_unknown_voices_list_the_valid_ones(voice, match):
    with pytest.raises(GradnapError, match=match) as err:
        espeak.check_espeak_voice(voice)
    assert "en-us" in str(err.value) or "klatt" in str(err.value)


@pytest.mark.parametrize(
    "word,phones",
    [
        ("gradnap", ["G", "R", "AE", "D", "N", "AE", "P"]),
        ("hello", ["HH", "AH", "L", "OW"]),
        ("fire", ["F", "AY", "ER"]),
        ("bottle", ["B", "AA", "T", "AH", "L"]),
        ("she", ["SH", "IY"]),
    ],
)
def test_word_phonemes(word, phones):
    assert espeak.word_phonemes(word) == phones


def test_word_phonemes_rejects_non_words():
    with pytest.raises(GradnapError, match="no letters"):
        espeak.word_phonemes("123")


def _symbols(accent: str, words) -> set[str]:
    return {s for w in espeak.text_phonemes(" ".join(words), accent) for s in w}


@pytest.mark.parametrize("accent", ACCENTS)
def test_every_symbol_of_the_vocabulary_is_mapped(accent):
    """Table-driven: each eSpeak symbol the accent uses for any corpus word maps to the
    39+SIL set or is a marker dropped on purpose (the pauses between words come from
    synthesis: see test_synthesis_spans_are_valid)."""
    table = espeak_table(accent)
    symbols = _symbols(accent, vocabulary().words)
    assert len(symbols) > 40, accent
    missing = sorted(s for s in symbols if s not in table)
    assert not missing, f"{accent}: unmapped eSpeak symbols {missing}"
    assert {ph for s in symbols for ph in table[s]} <= set(PHONE_SET)


@pytest.mark.parametrize("voice", SYNTH.espeak_voices)
def test_synthesis_spans_are_valid(voice):
    out = espeak.synthesize_espeak("the quick brown fox jumps over the lazy dog", voice, seed=1)
    assert out.samples.dtype == np.float32 and out.samples.ndim == 1
    assert np.abs(out.samples).max() <= 0.95 + 1e-6
    check_spans(out.spans, round(out.duration, 3))
    assert not out.unmapped
    assert out.spans[0].phone == "SIL" and out.spans[-1].phone == "SIL"
    speech = [s.phone for s in out.spans if s.phone != "SIL"]
    assert 26 <= len(speech) <= 36  # 31 phonemes in the pangram, accents differ


def test_synthesis_is_deterministic_whatever_came_before():
    text = "people would think about their work"
    a = espeak.synthesize_espeak(text, "en-us+klatt", rate=160, pitch=40, range_=60, seed=7)
    espeak.synthesize_espeak("something else entirely", "en+m7", rate=200, seed=3)
    espeak.word_phonemes("interleaved")
    b = espeak.synthesize_espeak(text, "en-us+klatt", rate=160, pitch=40, range_=60, seed=7)
    assert np.array_equal(a.samples, b.samples)
    assert a.spans == b.spans


def test_rate_changes_duration():
    slow = espeak.synthesize_espeak("this is a sentence of several words", "en-us", rate=110)
    fast = espeak.synthesize_espeak("this is a sentence of several words", "en-us", rate=250)
    assert slow.duration > 1.6 * fast.duration


def _rms(x: np.ndarray, start: float, end: float) -> float:
    sr = FEATURES.sample_rate
    seg = x[int(start * sr) : int(end * sr)]
    return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if seg.size else 0.0


@pytest.mark.parametrize("voice", ["en-us", "en-gb-x-rp+f3", "en-us+klatt"])
def test_pause_spans_are_silent_in_the_audio(voice):
    """Timings match the audio: the pauses that commas cause are (nearly) silent."""
    out = espeak.synthesize_espeak("see, sea, sea, see, sea", voice, seed=2)
    x = out.samples
    inner = [s for s in out.spans[1:-1] if s.phone == "SIL"]
    assert len(inner) == 4
    speech = [_rms(x, s.start, s.end) for s in out.spans if s.phone == "IY"]
    for s in inner:
        # leave 15 ms at each edge for the decay of the preceding vowel
        assert _rms(x, s.start + 0.015, s.end - 0.015) < 0.05 * np.mean(speech)
