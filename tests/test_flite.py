import shutil
import subprocess

import numpy as np
import pytest

from gradnap import GradnapError
from gradnap.corpus import flite
from gradnap.corpus.phones import FLITE_TO_ARPABET
from gradnap.corpus.text import vocabulary
from gradnap.corpus.timings import check_spans
from gradnap.defaults import FEATURES, PHONE_SET, SYNTH

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")

PANGRAM = "the quick brown fox jumps over the lazy dog"


def test_parse_psdur():
    assert flite.parse_psdur("pau:0.184 dh:0.236\nax:0.265 junk k:x") == [
        ("pau", 0.184),
        ("dh", 0.236),
        ("ax", 0.265),
    ]


def test_default_voices_are_known():
    assert set(SYNTH.flite_voices) <= set(flite.FLITE_VOICES)
    out = subprocess.run([flite.flite_binary(), "-lv"], capture_output=True, text=True).stdout
    for voice in SYNTH.flite_voices:
        assert voice in out.split()


def test_unknown_voice():
    with pytest.raises(GradnapError, match="slt"):
        flite.synthesize_flite("hello", "nosuchvoice")


def test_every_symbol_of_the_vocabulary_is_mapped(tmp_path):
    """Table-driven: every phone flite produces for the corpus vocabulary (its lexicon
    and letter-to-sound rules are shared by the US voices) maps into the 39+SIL set."""
    words = tmp_path / "words.txt"
    words.write_text(" ".join(vocabulary().words))
    out = subprocess.run(
        [flite.flite_binary(), "-voice", "kal16", "-ps", "-f", str(words), "-o", "none"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    symbols = set(out.split())
    assert len(symbols) > 35
    missing = sorted(s for s in symbols if s not in FLITE_TO_ARPABET)
    assert not missing, f"unmapped flite phones {missing}"
    assert {ph for s in symbols for ph in FLITE_TO_ARPABET[s]} <= set(PHONE_SET)


@pytest.mark.parametrize("voice", SYNTH.flite_voices)
def test_synthesis_spans_valid_and_deterministic(voice):
    a = flite.synthesize_flite(PANGRAM, voice, stretch=1.1, pitch=0.9)
    b = flite.synthesize_flite(PANGRAM, voice, stretch=1.1, pitch=0.9)
    assert np.array_equal(a.samples, b.samples) and a.spans == b.spans
    check_spans(a.spans, round(a.duration, 3))
    assert not a.unmapped
    phones = [s.phone for s in a.spans]
    assert phones[0] == phones[-1] == "SIL"
    assert phones[1:4] == ["DH", "AH", "K"]
    assert len(phones) == 33  # 31 phonemes of the pangram between two pauses


@pytest.mark.parametrize("voice", SYNTH.flite_voices)
def test_stretch_scales_duration(voice):
    base = flite.synthesize_flite(PANGRAM, voice)
    slow = flite.synthesize_flite(PANGRAM, voice, stretch=1.3)
    # pauses are stretched too; the total grows by nearly the factor
    assert 1.2 < slow.duration / base.duration < 1.4


def test_rms_pitch_is_speed_perturbation():
    base = flite.synthesize_flite(PANGRAM, "rms")
    up = flite.synthesize_flite(PANGRAM, "rms", pitch=1.25)
    assert up.duration == pytest.approx(base.duration / 1.25, abs=0.002)
    for a, b in zip(base.spans, up.spans, strict=True):
        assert a.phone == b.phone
        assert b.end == pytest.approx(a.end / 1.25, abs=0.0015)


def _f0(x: np.ndarray) -> float:
    """Median F0 in Hz of voiced 40 ms frames by autocorrelation (60-400 Hz)."""
    sr = FEATURES.sample_rate
    n = int(0.04 * sr)
    f0s = []
    for start in range(0, len(x) - n, n):
        frame = x[start : start + n] - x[start : start + n].mean()
        if np.sqrt(np.mean(frame**2)) < 0.02:
            continue
        ac = np.correlate(frame, frame, "full")[n - 1 :]
        lo, hi = sr // 400, sr // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            f0s.append(sr / lag)
    return float(np.median(f0s))


@pytest.mark.parametrize("voice", ["slt", "awb", "kal16"])
def test_pitch_moves_f0(voice):
    low = _f0(flite.synthesize_flite(PANGRAM, voice, pitch=0.85).samples)
    high = _f0(flite.synthesize_flite(PANGRAM, voice, pitch=1.2).samples)
    assert 1.2 < high / low < 1.7


@pytest.mark.parametrize("voice,stretch", [("slt", 1.0), ("kal16", 1.0), ("awb", 1.3)])
def test_pause_spans_are_silent_in_the_audio(voice, stretch):
    """Timings match the audio, also when stretched: pauses from commas are quiet."""
    out = flite.synthesize_flite("see, sea, sea, see, sea", voice, stretch=stretch)
    sr = FEATURES.sample_rate

    def rms(s):
        seg = out.samples[int((s.start + 0.015) * sr) : int((s.end - 0.015) * sr)]
        return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))

    inner = [s for s in out.spans[1:-1] if s.phone == "SIL"]
    assert len(inner) == 4
    speech = np.mean([rms(s) for s in out.spans if s.phone == "IY"])
    for s in inner:
        assert rms(s) < 0.05 * speech
