import json

import numpy as np
import pytest
import soundfile as sf

from gradnap.corpus.stats import corpus_stats
from gradnap.corpus.timings import PhoneSpan, timings_path, write_timings
from gradnap.defaults import PHONEMES


def _chapter(root, speaker, chapter, utts, phones=True):
    """utts: {index: (seconds, [(phone, end), ...])}"""
    d = root / speaker / chapter
    d.mkdir(parents=True)
    lines, timings = [], {}
    for i, (seconds, spans) in utts.items():
        utt = f"{speaker}-{chapter}-{i:04d}"
        sf.write(d / f"{utt}.flac", np.zeros(int(seconds * 16000), np.float32), 16000)
        lines.append(f"{utt} HELLO WORLD")
        start, out = 0.0, []
        for ph, end in spans:
            out.append(PhoneSpan(ph, start, end))
            start = end
        timings[utt] = out
    (d / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    if phones:
        write_timings(timings_path(d), timings)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "c"
    _chapter(root, "a", "0000", {0: (1.0, [("SIL", 0.2), ("HH", 0.5), ("SIL", 1.0)])})
    _chapter(
        root,
        "b",
        "0000",
        {
            0: (0.5, [("AA", 0.25), ("HH", 0.5)]),
            1: (1.5, [("SIL", 0.5), ("AA", 1.0), ("ZH", 1.5)]),
        },
    )
    return root


def test_counts(corpus):
    st = corpus_stats(corpus)
    assert st.utterances == 3 and st.with_phones == 3
    assert st.seconds == pytest.approx(3.0)
    assert st.hours == pytest.approx(3.0 / 3600)
    assert st.per_speaker == {"a": (1, pytest.approx(1.0)), "b": (2, pytest.approx(2.0))}
    assert st.phone_counts == {"SIL": 3, "HH": 2, "AA": 2, "ZH": 1}
    assert st.phone_seconds["SIL"] == pytest.approx(0.2 + 0.5 + 0.5)
    assert st.phone_seconds["AA"] == pytest.approx(0.75)


def test_rarest_counts_missing_phonemes_first(corpus):
    st = corpus_stats(corpus)
    rare = st.rarest(len(PHONEMES))
    assert [n for _, n in rare] == sorted(n for _, n in rare)
    assert rare[-3:] == [("ZH", 1), ("AA", 2), ("HH", 2)]
    assert rare[0] == ("AE", 0)  # alphabetical among the phonemes without examples
    assert "SIL" not in dict(rare)


def test_summary(corpus):
    (corpus / "corpus.json").write_text(
        json.dumps({"complete": True, "speakers": {"a": "en-us+f2"}})
    )
    text = corpus_stats(corpus).summary()
    assert "3 utterances" in text and "2 speakers" in text
    assert "en-us+f2" in text
    assert "rarest phonemes: AE (0)" in text
    assert "phonemes without examples:" in text


def test_corpus_without_timings(tmp_path):
    root = tmp_path / "c"
    _chapter(root, "s", "1", {0: (0.5, [("SIL", 0.5)])}, phones=False)
    st = corpus_stats(root)
    assert st.utterances == 1 and st.with_phones == 0
    assert "no phone timings" in st.summary()


def test_problems_are_reported(corpus):
    (corpus / "b" / "0000" / "b-0000-0007.flac").write_bytes(b"not audio")
    st = corpus_stats(corpus)
    assert st.utterances == 3
    assert any("b-0000-0007" in p for p in st.problems)
    assert "problems" in st.summary()
