"""LibriSpeech-format reading: a fixture corpus with good and bad entries, built here."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gradnap import GradnapError
from gradnap.corpus.librispeech import prepare_text, read_corpus
from gradnap.corpus.timings import PhoneSpan, timings_path, write_timings
from gradnap.features import num_frames


def tone(seconds: float, sr: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x  # (N,) or (N, C)


def chapter(root: Path, speaker: str, chap: str, lines: list[str] | None) -> Path:
    d = root / speaker / chap
    d.mkdir(parents=True)
    if lines is not None:
        (d / f"{speaker}-{chap}.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    """A small corpus: 4 readable utterances and one of each kind of bad input."""
    root = tmp_path / "corpus"
    a = chapter(
        root,
        "19",
        "198",
        [
            "19-198-0000 HELLO WORLD",  # 16 kHz mono FLAC
            "19-198-0001 WELL-KNOWN CAFÉ, ISN’T IT?",  # 8 kHz stereo FLAC, punctuation
            "19-198-0002 ",  # empty text
            "19-198-0003 IN THE YEAR 1990",  # spoken characters outside the alphabet
            "19-198-0004 NO AUDIO FOR THIS ONE",  # missing audio file
            "19-198-0005 CORRUPT AUDIO",  # garbage bytes with a .flac name
            "19-198-0006 TRUNCATED AUDIO",  # valid header, data cut short
            "19-198-0000 DUPLICATE ID",
        ],
    )
    sf.write(a / "19-198-0000.flac", tone(1.0, 16000), 16000)
    sf.write(a / "19-198-0001.flac", tone(0.5, 8000, channels=2), 8000)
    sf.write(a / "19-198-0002.flac", tone(0.2, 16000), 16000)
    sf.write(a / "19-198-0003.flac", tone(0.2, 16000), 16000)
    (a / "19-198-0005.flac").write_bytes(b"fLaC" + bytes(range(256)) * 4)
    sf.write(a / "19-198-0006.flac", tone(3.0, 16000, freq=1234.5), 16000)
    data = (a / "19-198-0006.flac").read_bytes()
    (a / "19-198-0006.flac").write_bytes(data[: len(data) // 2])
    sf.write(a / "19-198-0007.flac", tone(0.2, 16000), 16000)  # no transcript line
    (a / "._19-198-0000.flac").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata: ignored

    b = chapter(root, "19", "227", ["19-227-0000 A WAV FILE AT TWENTY TWO KILOHERTZ"])
    sf.write(b / "19-227-0000.wav", tone(0.75, 22050), 22050, subtype="PCM_16")

    c = chapter(root, "26", "495", None)  # audio without any transcript file
    sf.write(c / "26-495-0000.flac", tone(0.2, 16000), 16000)
    return root


def test_reads_good_utterances_and_texts(corpus_dir):
    corpus = read_corpus(corpus_dir)
    texts = {u.id: u.text for u in corpus}
    assert texts == {
        "19-198-0000": "hello world",
        "19-198-0001": "well known cafe isn't it",
        "19-198-0006": "truncated audio",  # header fine: found when loaded
        "19-227-0000": "a wav file at twenty two kilohertz",
    }
    utt = corpus.utterances[0]
    assert (utt.speaker, utt.chapter, utt.audio_path.name) == ("19", "198", "19-198-0000.flac")
    assert corpus.speakers() == ["19"]
    assert corpus.removed_chars == 2  # "," and "?"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("19-198.trans.txt:3", "no usable text"),
        ("19-198.trans.txt:4", "outside the alphabet ('1', '9', '0')"),
        ("19-198-0004.flac", "audio file missing"),
        ("19-198-0005.flac", "cannot read audio"),
        ("19-198.trans.txt:8", "listed again"),
        ("19-198-0007.flac", "no transcript line"),
        ("26-495", "no transcript"),
    ],
)
def test_each_bad_input_is_reported_naming_its_file(corpus_dir, name, words):
    corpus = read_corpus(corpus_dir)
    hits = [p for p in corpus.problems if name in p]
    assert len(hits) == 1, corpus.problems
    assert words in hits[0]


def test_problem_count(corpus_dir):
    assert len(read_corpus(corpus_dir).problems) == 7


def test_iter_features_resamples_mixes_and_skips_undecodable(corpus_dir):
    corpus = read_corpus(corpus_dir)
    feats = {u.id: x for u, x in corpus.iter_features()}
    assert set(feats) == {"19-198-0000", "19-198-0001", "19-227-0000"}
    assert feats["19-198-0000"].shape == (128, num_frames(16000))
    assert feats["19-198-0001"].shape == (128, num_frames(8000))  # 0.5 s at 8 kHz -> 16 kHz
    assert feats["19-227-0000"].shape == (128, num_frames(12000))  # 0.75 s at 22.05 kHz
    truncated = [p for p in corpus.problems if "19-198-0006.flac" in p]
    assert len(truncated) == 1 and "cannot read audio" in truncated[0]
    list(corpus.iter_features())  # a second pass records the same problem once
    assert sum("19-198-0006.flac" in p for p in corpus.problems) == 1


def test_stereo_is_mixed_down(tmp_path):
    d = chapter(tmp_path, "1", "2", ["1-2-0000 LEFT AND RIGHT"])
    left = tone(0.5, 16000, freq=300.0)
    sf.write(d / "1-2-0000.flac", np.stack([left, -left], axis=1), 16000)  # cancels out
    corpus = read_corpus(tmp_path)
    assert np.abs(corpus.audio(corpus.utterances[0])).max() < 1e-3


def test_without_header_check_bad_audio_is_found_on_load(corpus_dir):
    corpus = read_corpus(corpus_dir, check_audio=False)
    assert "19-198-0005" in {u.id for u in corpus}
    ids = {u.id for u, _ in corpus.iter_features()}
    assert "19-198-0005" not in ids
    assert any("19-198-0005.flac" in p and "cannot read audio" in p for p in corpus.problems)


def test_phone_timings_attached_and_checked(corpus_dir):
    d = corpus_dir / "19" / "198"
    good = [PhoneSpan("SIL", 0.0, 0.5), PhoneSpan("HH", 0.5, 1.0)]
    gap = [PhoneSpan("SIL", 0.0, 0.1), PhoneSpan("AA", 0.2, 0.5)]
    write_timings(timings_path(d), {"19-198-0000": good, "19-198-0001": gap})
    corpus = read_corpus(corpus_dir)
    phones = {u.id: u.phones for u in corpus}
    assert phones["19-198-0000"] == tuple(good)
    assert phones["19-198-0001"] is None  # kept, without its phones
    (warning,) = corpus.warnings
    assert "19-198.phones.tsv" in warning and "phones of 19-198-0001 ignored" in warning
    assert "gap or overlap" in warning and "utterance kept" in warning
    assert not any("19-198-0001" in p for p in corpus.problems)
    assert [u.id for u in corpus.with_phones()] == ["19-198-0000"]
    assert all(u.phones is None for u in read_corpus(corpus_dir, timings=False))


def test_unreadable_timings_file_is_ignored(corpus_dir):
    d = corpus_dir / "19" / "198"
    timings_path(d).write_text("utterance\tstart\tend\tphone\n19-198-0000\t0\t1\tQQ\n")
    corpus = read_corpus(corpus_dir)
    assert all(u.phones is None for u in corpus) and len(corpus) == 4
    (warning,) = corpus.warnings
    assert "19-198.phones.tsv:2" in warning and "phone timings of this chapter ignored" in warning


def test_timings_longer_than_the_audio_skip_the_utterance(tmp_path, caplog):
    """0.2 s of audio with phones to 4.97 s: audio, transcript or timings are wrong."""
    d = chapter(tmp_path, "1", "2", ["1-2-0000 HELLO", "1-2-0001 WORLD"])
    sf.write(d / "1-2-0000.flac", tone(0.2, 16000), 16000)
    sf.write(d / "1-2-0001.flac", tone(0.5, 16000), 16000)
    long = [PhoneSpan("SIL", 0.0, 0.5), PhoneSpan("HH", 0.5, 4.97)]
    fits = [PhoneSpan("SIL", 0.0, 0.1), PhoneSpan("W", 0.1, 0.51)]  # within 20 ms
    write_timings(timings_path(d), {"1-2-0000": long, "1-2-0001": fits})
    corpus = read_corpus(tmp_path)
    assert [u.id for u in corpus] == ["1-2-0001"] and corpus.utterances[0].phones == tuple(fits)
    (problem,) = corpus.problems
    assert "1-2.phones.tsv: phones of 1-2-0000 end at 4.970 s" in problem
    assert "1-2-0000.flac lasts 0.200 s" in problem
    assert "skipped: " + problem in caplog.text
    # Without the header check the duration is unknown: only the format is checked.
    assert [u.id for u in read_corpus(tmp_path, check_audio=False)] == ["1-2-0000", "1-2-0001"]


def test_negative_phone_start_is_rejected_and_utterance_kept(tmp_path, caplog):
    d = chapter(tmp_path, "1", "2", ["1-2-0000 HELLO"])
    sf.write(d / "1-2-0000.flac", tone(0.5, 16000), 16000)
    write_timings(
        timings_path(d), {"1-2-0000": [PhoneSpan("SIL", -0.2, 0.1), PhoneSpan("HH", 0.1, 0.5)]}
    )
    corpus = read_corpus(tmp_path)
    assert len(corpus) == 1 and corpus.utterances[0].phones is None and not corpus.problems
    (warning,) = corpus.warnings
    assert "1-2.phones.tsv: phones of 1-2-0000 ignored" in warning
    assert "start at -0.200 s, not at 0" in warning and "utterance kept" in warning
    assert "skipped" not in caplog.text  # the utterance is kept: no "skipped:" message


def test_timings_of_unlisted_utterances_are_reported(tmp_path):
    d = chapter(tmp_path, "1", "2", ["1-2-0000 HELLO"])
    sf.write(d / "1-2-0000.flac", tone(0.5, 16000), 16000)
    spans = [PhoneSpan("SIL", 0.0, 0.5)]
    write_timings(timings_path(d), {"1-2-0000": spans, "1-2-0009": spans})
    (warning,) = read_corpus(tmp_path).warnings
    assert "1-2.phones.tsv: phones of 1 utterances not listed in 1-2.trans.txt" in warning
    assert "1-2-0009" in warning


def test_digital_silence_is_skipped_when_loaded(tmp_path):
    d = chapter(tmp_path, "1", "2", ["1-2-0000 HELLO", "1-2-0001 QUIET"])
    sf.write(d / "1-2-0000.flac", tone(0.5, 16000), 16000)
    sf.write(d / "1-2-0001.flac", np.zeros(32000), 16000)  # 2 s of digital silence
    corpus = read_corpus(tmp_path)
    assert len(corpus) == 2  # the header is fine
    assert [u.id for u, _ in corpus.iter_features()] == ["1-2-0000"]
    (problem,) = corpus.problems
    assert "1-2-0001.flac: audio is digital silence (2.00 s, peak all samples 0)" in problem
    quiet = read_corpus(tmp_path).utterances[1]
    sf.write(d / "1-2-0001.flac", tone(2.0, 16000) * 1e-4, 16000, subtype="PCM_24")
    with pytest.raises(GradnapError, match=r"digital silence \(2.00 s, peak -9\d dBFS\)"):
        corpus.features(quiet)


def test_single_differently_named_transcript_is_used(tmp_path):
    d = chapter(tmp_path, "5", "6", None)
    (d / "other.trans.txt").write_text("5-6-0000 HI THERE\n")
    sf.write(d / "5-6-0000.flac", tone(0.3, 16000), 16000)
    corpus = read_corpus(tmp_path)
    assert [u.text for u in corpus] == ["hi there"] and not corpus.problems


def test_non_utf8_transcript_is_reported(tmp_path):
    d = chapter(tmp_path, "5", "6", None)
    (d / "5-6.trans.txt").write_bytes("5-6-0000 CAF\xc9\n5-6-0001 FINE\n".encode("latin-1"))
    for i in range(2):
        sf.write(d / f"5-6-000{i}.flac", tone(0.3, 16000), 16000)
    corpus = read_corpus(tmp_path)
    assert [u.id for u in corpus] == ["5-6-0001"]
    assert "5-6.trans.txt:1" in corpus.problems[0] and "UTF-8" in corpus.problems[0]


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(GradnapError, match="not found"):
        read_corpus(tmp_path / "nope")
    with pytest.raises(GradnapError, match="no LibriSpeech-format chapters"):
        read_corpus(tmp_path)


def test_root_one_level_too_high_gets_a_hint(corpus_dir):
    with pytest.raises(GradnapError, match="did you mean .*corpus"):
        read_corpus(corpus_dir.parent)


@pytest.mark.parametrize(
    ("raw", "text", "removed", "unknown"),
    [
        ("HELLO, WORLD!", "hello world", 2, []),
        ("WELL-KNOWN  CAFÉ", "well known cafe", 0, []),
        ("DON’T “QUOTE” ME", "don't quote me", 2, []),
        ("NAÏVE STRASSE ß", "naive strasse ss", 0, []),
        ("ROOM 101", "room", 0, ["1", "0"]),
        ("TOM & JERRY", "tom jerry", 0, ["&"]),
        ("FIFTY %", "fifty", 0, ["%"]),
        ("ПРИВЕТ", "", 0, ["п", "р", "и", "в", "е", "т"]),
        ("...", "", 3, []),
    ],
)
def test_prepare_text(raw, text, removed, unknown):
    assert prepare_text(raw) == (text, removed, unknown)
