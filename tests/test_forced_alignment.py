"""Forced alignment: phone mapping, span conversion, and flite speech with known timings."""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gradnap import GradnapError
from gradnap.cli import main
from gradnap.corpus import lexicon, read_corpus
from gradnap.corpus.forced_alignment import (
    Aligner,
    AlignmentError,
    align_corpus,
    alignment_quality,
    boundary_errors,
    check_words,
    failures_path,
    map_phone,
    speech_frames,
)
from gradnap.corpus.timings import (
    PhoneSpan,
    check_spans,
    read_timings,
    timings_path,
    write_timings,
)
from gradnap.defaults import PHONE_SET, AlignmentConfig

# flite's phones are ARPAbet in lower case; these are the exceptions (docs/method.md §2).
FLITE_PHONES = {"pau": "SIL", "ax": "AH", "dx": "T"}

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "we will meet again next week at the station",
    "please call me when you get home tonight",
    "a large black cat sat on the old wooden chair",
    "they found the missing money under the bed",
    "my brother bought a new car last summer",
    "the weather was cold and the roads were wet",
    "children like to play games in the park",
    "he reads a short story every evening",
    "the teacher asked a simple question",
    "bring your book to the next class",
]
VOICES = ["slt", "rms", "awb", "kal16"]


def flite(text: str, voice: str, path: Path) -> list[PhoneSpan]:
    """Synthesize ``text`` to a 16 kHz FLAC; return flite's own phone spans."""
    wav = path.with_suffix(".wav")
    cmd = ["flite", "-voice", voice, "-psdur", "-t", text, "-o", str(wav)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    data, sr = sf.read(wav, dtype="int16")
    wav.unlink()
    assert sr == 16000
    sf.write(path, data, sr)
    duration = len(data) / sr
    spans, prev = [], 0.0
    for token in out.split():  # "phone:end_seconds"
        phone, end = token.rsplit(":", 1)
        end = min(float(end), duration)
        phone = FLITE_PHONES.get(phone, phone.upper())
        assert phone in PHONE_SET, phone
        if end > prev:
            spans.append(PhoneSpan(phone, prev, end))
            prev = end
    spans[-1] = PhoneSpan(spans[-1].phone, spans[-1].start, duration)
    return spans


def flite_corpus(root: Path, sentences: list[str], speaker: str = "7") -> dict[str, list]:
    """One chapter of flite speech in LibriSpeech layout; returns the reference spans."""
    d = root / speaker / "1"
    d.mkdir(parents=True)
    reference, lines = {}, []
    for i, text in enumerate(sentences):
        utt = f"{speaker}-1-{i:04d}"
        reference[utt] = flite(text, VOICES[i % len(VOICES)], d / f"{utt}.flac")
        lines.append(f"{utt} {text.upper()}")
    (d / f"{speaker}-1.trans.txt").write_text("\n".join(lines) + "\n")
    return reference


@pytest.fixture
def no_g2p(monkeypatch):
    monkeypatch.setattr(lexicon, "default_g2p", lambda: None)


def pocketsphinx_phones() -> set[str]:
    from pocketsphinx import get_model_path

    phones = set()
    for line in Path(get_model_path("en-us/cmudict-en-us.dict")).read_text().splitlines():
        phones.update(line.split()[1:])
    return phones


def test_every_pocketsphinx_phone_maps_to_the_phone_set():
    phones = pocketsphinx_phones()
    assert len(phones) == 39
    for phone in phones | {"SIL", "+NSN+", "+SPN+"}:
        assert map_phone(phone) in PHONE_SET
    assert {map_phone(p) for p in phones} == set(PHONE_SET) - {"SIL"}
    assert map_phone("+SPN+") == map_phone("SIL") == "SIL"
    with pytest.raises(AlignmentError, match="AX"):
        map_phone("AX")


def S(*items):
    return [PhoneSpan(p, a, b) for p, a, b in items]


def test_boundary_errors_known_answers():
    ref = S(("SIL", 0, 0.1), ("HH", 0.1, 0.2), ("AY", 0.2, 0.4), ("SIL", 0.4, 0.5))
    same = boundary_errors(ref, ref)
    assert np.array_equal(same, np.zeros(3))
    late = S(("SIL", 0, 0.11), ("HH", 0.11, 0.19), ("AY", 0.19, 0.43), ("SIL", 0.43, 0.5))
    assert np.allclose(boundary_errors(ref, late), [0.01, -0.01, 0.03])
    # A pause only the hypothesis has: boundaries next to it are not compared.
    ref2 = S(("SIL", 0, 0.1), ("AA", 0.1, 0.2), ("B", 0.2, 0.3), ("SIL", 0.3, 0.4))
    hyp2 = S(
        ("SIL", 0, 0.1), ("AA", 0.1, 0.2), ("SIL", 0.2, 0.22), ("B", 0.22, 0.3), ("SIL", 0.3, 0.4)
    )
    assert np.allclose(boundary_errors(ref2, hyp2), [0.0, 0.0])
    assert boundary_errors(ref, S(("SIL", 0, 0.5))).size == 0


def test_span_conversion_pads_shifts_clips_and_merges():
    aligner = Aligner(AlignmentConfig(pad_seconds=0.3, window_centre=False))
    aligner.decoder  # noqa: B018  (reads frame rate and window length)
    # 100 frames/s; 30 frames of padding. Audio is 1.0 s long.
    segments = [("SIL", 0, 40), ("+NSN+", 40, 5), ("HH", 45, 20), ("AY", 65, 50), ("SIL", 115, 100)]
    spans = aligner._spans(segments, 1.0)
    assert spans == S(
        ("SIL", 0.0, 0.15), ("HH", 0.15, 0.35), ("AY", 0.35, 0.85), ("SIL", 0.85, 1.0)
    )
    centred = Aligner(AlignmentConfig(pad_seconds=0.3, window_centre=True))
    centred.decoder  # noqa: B018
    shifted = centred._spans(segments, 1.0)
    # Window 25.625 ms, shift 10 ms: boundaries move by 12.8125 - 5 = 7.8 ms (rounded to ms).
    assert [s.end for s in shifted[:-1]] == [0.158, 0.358, 0.858]
    with pytest.raises(AlignmentError, match="outside the audio"):
        aligner._spans([("SIL", 0, 5), ("HH", 5, 10), ("SIL", 15, 120)], 1.0)


def test_check_words_known_answers():
    check_words(["as", "hair"], ["<sil>", "as(2)", "<sil>", "hair", "</s>"])
    with pytest.raises(AlignmentError, match="stops after 1 of the 3 words .leaves out 'b c'."):
        check_words(["a", "b", "c"], ["<sil>", "a", "<sil>", "</s>"])  # search ended early
    with pytest.raises(AlignmentError, match="'a x' differ from the transcript"):
        check_words(["a", "b"], ["a", "x"])


def test_alignment_quality_known_answers():
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(6400) / 16000)
    pcm = np.concatenate([np.zeros(4800), tone, np.zeros(4800)])  # 0.3 s, 0.4 s, 0.3 s
    pcm = np.rint(pcm * 32767).astype(np.int16)
    speech = speech_frames(pcm)
    assert speech.shape == (100,) and np.flatnonzero(speech).tolist() == list(range(30, 70))
    noisy = pcm + np.random.default_rng(0).normal(0, 30, len(pcm)).astype(np.int16)
    assert speech_frames(noisy).sum() == 40  # steady noise is not speech
    spans = S(("SIL", 0, 0.5), ("AA", 0.5, 1.0))  # half the tone aligned as silence
    segments = [("SIL", 0, 80, -100), ("AA", 80, 50, -2000), ("SIL", 130, 30, -50)]
    q = alignment_quality(pcm, spans, segments)
    assert (q.silence_share, q.speech_seconds, q.phone_score) == (0.5, 0.4, -40.0)
    assert q.problem() == "50% of the 0.4 s of speech aligned as silence (more than 30%)"
    assert q.warning() is None
    strict = AlignmentConfig(max_silence_share=None, warn_phone_score=-30.0)
    assert q.problem(strict) is None
    assert q.warning(strict) == "acoustic score -40.0 per frame (below -30)"
    silent = alignment_quality(np.zeros(1600, dtype=np.int16), S(("SIL", 0, 0.1)), segments[:1])
    assert silent.silence_share == 0.0 and silent.speech_seconds == 0.0


def test_wrong_transcripts_are_rejected_or_flagged(tmp_path, caplog, capsys):
    """The right transcript, "YES" and an unrelated sentence for the same flite audio
    (2.96 s), and digital silence; numbers in docs/alignment.md."""
    root = tmp_path / "corpus"
    d = root / "7" / "1"
    d.mkdir(parents=True)
    for i in range(3):
        flite(SENTENCES[0], "slt", d / f"7-1-000{i}.flac")
    sf.write(d / "7-1-0003.flac", np.zeros(16000), 16000)
    texts = [SENTENCES[0], "yes", SENTENCES[1], "hello"]
    (d / "7-1.trans.txt").write_text(
        "".join(f"7-1-000{i} {t.upper()}\n" for i, t in enumerate(texts))
    )
    report = align_corpus(root, jobs=1, progress=False)
    assert report.aligned == 2 and [u for u, _ in report.failed] == ["7-1-0001", "7-1-0003"]
    yes, silence = (m for _, m in report.failed)
    assert re.fullmatch(
        re.escape(f"{d / '7-1-0001.flac'}: poor alignment: ")
        + r"(\d+)% of the 2.4 s of speech aligned as silence \(more than 30%\); "
        "does the transcript match the audio[?]",
        yes,
    )
    assert silence.startswith(f"{d / '7-1-0003.flac'}: audio is digital silence (1.00 s")
    ((utt, doubt),) = report.doubtful
    assert utt == "7-1-0002" and re.fullmatch(
        re.escape(f"{d / '7-1-0002'}: aligned, but acoustic score -")
        + r"\d+\.\d per frame \(below -55\)",
        doubt,
    )
    assert doubt in caplog.text
    assert report.quality["7-1-0000"].silence_share == 0.0
    assert sorted(read_timings(timings_path(d))) == ["7-1-0000", "7-1-0002"]
    assert [line.split("\t")[0] for line in failures_path(d).read_text().splitlines()] == [
        "7-1-0001",
        "7-1-0003",
    ]
    summary = report.summary()
    assert "1 rejected as poor alignments" in summary and "1 aligned with a low acoustic" in summary
    assert main(["corpus", "align", str(root), "--overwrite", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "aligned 2, failed 2" in out and "7-1-0002: aligned, but acoustic score" in out


def test_overwrite_leaves_no_stale_timings(tmp_path, no_g2p, caplog):
    root = tmp_path / "corpus"
    flite_corpus(root, SENTENCES[:2])
    d = root / "7" / "1"
    assert align_corpus(root, jobs=1, progress=False).aligned == 2
    other = root / "8" / "1"  # a chapter whose transcript the reader cannot use any more
    other.mkdir(parents=True)
    flite(SENTENCES[2], "slt", other / "8-1-0000.flac")
    (other / "8-1.trans.txt").write_text("8-1-0000 " + SENTENCES[2].upper() + "\n")
    assert align_corpus(root, jobs=1, progress=False).aligned == 1
    # New transcripts that cannot be aligned (a word nobody can pronounce), and digits.
    (d / "7-1.trans.txt").write_text("7-1-0000 THE QWXZYV\n7-1-0001 SHE QWXZYV\n")
    (other / "8-1.trans.txt").write_text("8-1-0000 IN 1990\n")
    report = align_corpus(root, jobs=1, overwrite=True, progress=False)
    assert report.aligned == 0 and len(report.failed) == 2
    assert not timings_path(d).exists() and not timings_path(other).exists()
    assert f"{timings_path(d)}: removed (no utterance of the chapter aligned" in caplog.text
    assert f"{timings_path(other)}: removed (--overwrite" in caplog.text
    assert all(u.phones is None for u in read_corpus(root))
    # Timings are not read for aligning: stale ones never make an utterance a corpus problem.
    write_timings(timings_path(d), {"7-1-0000": S(("SIL", 0.0, 9.0))})
    (problem,) = align_corpus(root, jobs=1, overwrite=True, progress=False).corpus_problems
    assert "8-1.trans.txt:1" in problem and "outside the alphabet" in problem


def test_align_flite_utterance_and_unknown_word(tmp_path, no_g2p):
    ref = flite("the quick brown fox", "slt", tmp_path / "a.flac")
    aligner = Aligner()
    spans, duration = aligner.align_file(tmp_path / "a.flac", "the quick brown fox")
    check_spans(spans, duration)
    assert [s.phone for s in spans if s.phone != "SIL"] == [
        s.phone for s in ref if s.phone != "SIL"
    ]
    with pytest.raises(AlignmentError, match="'qwxzyv'"):
        aligner.align_file(tmp_path / "a.flac", "the qwxzyv brown fox")
    # The decoder is rebuilt after a failure and works again.
    again, _ = aligner.align_file(tmp_path / "a.flac", "the quick brown fox")
    assert again == spans


def test_result_does_not_depend_on_previous_utterances(tmp_path):
    flite("the quick brown fox", "slt", tmp_path / "a.flac")
    flite("she sells sea shells", "rms", tmp_path / "b.flac")
    config = AlignmentConfig(dither=(10.0,))  # the decoder's running state matters here
    aligner = Aligner(config)
    first, _ = aligner.align_file(tmp_path / "a.flac", "the quick brown fox")
    aligner.align_file(tmp_path / "b.flac", "she sells sea shells")
    again, _ = aligner.align_file(tmp_path / "a.flac", "the quick brown fox")
    fresh, _ = Aligner(config).align_file(tmp_path / "a.flac", "the quick brown fox")
    assert first == again == fresh


def test_failed_attempt_is_retried_with_the_next_dither(tmp_path, monkeypatch):
    flite("the quick brown fox", "slt", tmp_path / "a.flac")
    seen = []
    decode = Aligner._decode

    def flaky(self, decoder, data, text):
        seen.append(np.frombuffer(data, dtype=np.int16)[:4800].std())  # the padding
        if len(seen) == 1:
            raise AlignmentError("the words could not be aligned to the audio")
        return decode(decoder, data, text)

    monkeypatch.setattr(Aligner, "_decode", flaky)
    monkeypatch.setattr(lexicon, "default_g2p", lambda: lambda word: ["K", "W", "IH", "K"])
    aligner = Aligner(AlignmentConfig(dither=(0.0, 10.0)))
    # "quikk" is added to the first decoder and again to the one made after the failure.
    spans, duration = aligner.align_file(tmp_path / "a.flac", "the quikk brown fox")
    check_spans(spans, duration)
    assert aligner.retries == 1 and aligner.added_words == {"quikk": "g2p"}
    assert seen[0] == 0.0 and 8.0 < seen[1] < 12.0  # silence, then noise of std 10
    seen.clear()
    once = Aligner(AlignmentConfig(dither=(0.0,)))  # a single attempt: its error is raised
    with pytest.raises(AlignmentError, match="could not be aligned"):
        once.align_file(tmp_path / "a.flac", "the quick brown fox")
    assert once.retries == 0 and len(seen) == 1


def test_g2p_pronounces_words_missing_from_dictionaries(tmp_path, monkeypatch):
    flite("the quick brown fox", "slt", tmp_path / "a.flac")
    calls = []

    def g2p(word):
        calls.append(word)
        return ["K", "W", "IH1", "K"]

    monkeypatch.setattr(lexicon, "default_g2p", lambda: g2p)
    aligner = Aligner()
    spans, duration = aligner.align_file(tmp_path / "a.flac", "the quikk brown fox")
    check_spans(spans, duration)
    assert calls == ["quikk"] and aligner.added_words == {"quikk": "g2p"}
    assert [s.phone for s in spans if s.phone != "SIL"][2:6] == ["K", "W", "IH", "K"]


def test_align_rejects_silence_and_empty_text(tmp_path):
    aligner = Aligner()
    silence = np.zeros(1600, dtype=np.float32)
    with pytest.raises(AlignmentError):
        aligner.align(silence, "this sentence is much too long for a tenth of a second")
    with pytest.raises(AlignmentError, match="no words"):
        aligner.align(silence, " ' ")


def test_align_corpus_writes_timings_failures_and_resumes(tmp_path, no_g2p, caplog):
    root = tmp_path / "corpus"
    flite_corpus(root, SENTENCES[:3])
    d = root / "7" / "1"
    trans = d / "7-1.trans.txt"
    trans.write_text(trans.read_text() + "7-1-0003 THE QWXZYV BROWN FOX\n7-1-0004 MISSING AUDIO\n")
    flite("the quick brown fox", "slt", d / "7-1-0003.flac")
    report = align_corpus(root, jobs=1, progress=False)
    assert (report.aligned, len(report.failed), report.skipped_utterances) == (3, 1, 0)
    assert report.failed[0][0] == "7-1-0003" and "qwxzyv" in report.failed[0][1]
    assert len(report.corpus_problems) == 1 and "7-1-0004.flac" in report.corpus_problems[0]
    timings = read_timings(timings_path(d))
    assert sorted(timings) == ["7-1-0000", "7-1-0001", "7-1-0002"]
    for utt, spans in timings.items():
        check_spans(spans, sf.info(d / f"{utt}.flac").duration)
    failures = failures_path(d).read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith("7-1-0003\t")
    summary = report.summary()
    assert "aligned 3, failed 1, skipped 0" in summary and "real time" in summary
    assert "7-1-0003" in summary

    again = align_corpus(root, jobs=1, progress=False)  # chapter has timings: skipped
    assert (again.aligned, len(again.failed), again.skipped_utterances) == (0, 0, 4)
    assert again.skipped_chapters == 1 and "skipped 4" in again.summary()

    trans.write_text("".join(trans.read_text().splitlines(True)[:3]))
    redo = align_corpus(root, jobs=1, overwrite=True, progress=False)
    assert (redo.aligned, len(redo.failed)) == (3, 0)
    assert read_timings(timings_path(d)) == timings  # deterministic
    assert not failures_path(d).exists()  # stale failure list removed


def test_align_corpus_not_a_corpus(tmp_path):
    with pytest.raises(GradnapError, match="not found"):
        align_corpus(tmp_path / "nope")


def test_alignment_agrees_with_flite_timings(tmp_path):
    """Median boundary error <= 20 ms on 12 utterances of 4 flite voices (docs/method.md §2)."""
    reference = flite_corpus(tmp_path / "corpus", SENTENCES)
    report = align_corpus(tmp_path / "corpus", jobs=1, progress=False)
    assert report.aligned == len(SENTENCES) and not report.failed
    hypothesis = read_timings(timings_path(tmp_path / "corpus" / "7" / "1"))
    errors = np.concatenate([boundary_errors(reference[u], hypothesis[u]) for u in reference])
    n_phones = sum(len(s) for s in reference.values())
    assert errors.size > 0.8 * n_phones  # most boundaries are compared
    assert np.median(np.abs(errors)) <= 0.020
    assert abs(np.mean(errors)) <= 0.010  # no systematic shift


@pytest.mark.slow
def test_process_pool_and_command_line(tmp_path, capsys):
    root = tmp_path / "corpus"
    reference = flite_corpus(root, SENTENCES[:4])
    assert main(["corpus", "align", str(root), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "aligned 4, failed 0" in out and "2 job(s)" in out
    timings = read_timings(timings_path(root / "7" / "1"))
    assert sorted(timings) == sorted(reference)
    # Same result as in-process alignment.
    lines = (root / "7" / "1" / "7-1.trans.txt").read_text().splitlines()
    texts = dict(line.lower().split(" ", 1) for line in lines)
    single = Aligner()
    for utt in reference:
        spans, _ = single.align_file(root / "7" / "1" / f"{utt}.flac", texts[utt])
        assert timings[utt] == spans


def test_cli_help():
    with pytest.raises(SystemExit) as info:
        main(["corpus", "align", "--help"])
    assert info.value.code == 0


@pytest.mark.slow
def test_alignment_agrees_with_synthesized_corpus(tmp_path):
    """The same check on `gradnap corpus synth` output (its phones.tsv is the reference)."""
    from gradnap.corpus.synth import synthesize_corpus

    root = tmp_path / "synth"
    synthesize_corpus(root, utterances=12, seed=3, voices=["flite"], jobs=1, progress=False)
    reference = {}
    for path in root.glob("*/*/*.phones.tsv"):
        reference.update(read_timings(path))
        path.rename(path.with_suffix(".reference"))
    report = align_corpus(root, jobs=1, progress=False)
    assert report.aligned == len(reference) == 12 and not report.failed
    hypothesis = {}
    for path in root.glob("*/*/*.phones.tsv"):
        hypothesis.update(read_timings(path))
    errors = np.concatenate([boundary_errors(reference[u], hypothesis[u]) for u in reference])
    assert errors.size > 0.5 * sum(len(s) for s in reference.values())
    assert np.median(np.abs(errors)) <= 0.020
