import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from gradnap import GradnapError
from gradnap.cli import main
from gradnap.corpus import read_corpus
from gradnap.corpus import synth as S
from gradnap.corpus.timings import check_spans
from gradnap.defaults import SYNTH, SynthConfig

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")

VOICES = ["slt", "en-us+f2"]


def _tree(root):
    """{relative path: bytes} of every file under root."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "corpus"
    report = S.synthesize_corpus(root, utterances=5, seed=3, voices=VOICES, jobs=1, progress=False)
    return root, report


def test_speaker_names_and_voice_groups():
    assert S.speaker_name("en-gb-x-rp+f3") == "en_gb_x_rp_f3"
    assert S.speaker_name("slt") == "slt"
    voices = S.resolve_voices(None)
    assert len(voices) == len(SYNTH.flite_voices) + len(SYNTH.espeak_voices) >= 12
    assert {v.engine for v in voices} == {"flite", "espeak"}
    assert all("-" not in v.speaker for v in voices)
    assert [v.name for v in S.resolve_voices(["flite"])] == list(SYNTH.flite_voices)
    assert [v.name for v in S.resolve_voices(["slt", "EN-US", "slt"])] == ["slt", "en-us"]
    with pytest.raises(GradnapError, match="neither a flite voice"):
        S.resolve_voices(["nosuch"])


def test_plan_spreads_utterances_evenly_in_chapters():
    voices = S.resolve_voices(["slt", "rms", "en-us"])
    cfg = SynthConfig(chapter_size=2)
    plan = S.plan_corpus(7, seed=0, voices=voices, config=cfg)
    per = {}
    for job in plan:
        per.setdefault(job.speaker, []).append(job)
    assert [len(per[v.speaker]) for v in voices] == [3, 2, 2]
    assert [j.utt_id for j in per["slt"]] == ["slt-0000-0000", "slt-0000-0001", "slt-0001-0000"]
    assert [j.chapter for j in per["slt"]] == ["0000", "0000", "0001"]
    assert len({j.text for j in plan}) == 7
    # prosody within the configured ranges, seeded
    for j in plan:
        p = dict(j.prosody)
        if j.engine == "flite":
            assert cfg.flite_stretch[0] <= p["stretch"] <= cfg.flite_stretch[1]
        else:
            assert cfg.espeak_rate[0] <= p["rate"] <= cfg.espeak_rate[1]
    assert plan == S.plan_corpus(7, seed=0, voices=voices, config=cfg)
    assert plan != S.plan_corpus(7, seed=1, voices=voices, config=cfg)
    with pytest.raises(GradnapError, match="utterances"):
        S.plan_corpus(0, seed=0, voices=voices)


def test_tiny_corpus_layout_and_read_back(tiny):
    root, report = tiny
    assert report.utterances == 5 and report.per_speaker == {"slt": 3, "en_us_f2": 2}
    assert not report.failed
    manifest = json.loads((root / "corpus.json").read_text())
    assert manifest["complete"] is True
    assert manifest["request"]["seed"] == 3
    assert manifest["counts"]["per_speaker"] == {"slt": 3, "en_us_f2": 2}
    assert manifest["speakers"] == {"slt": "slt", "en_us_f2": "en-us+f2"}
    trans = (root / "slt" / "0000" / "slt-0000.trans.txt").read_text().splitlines()
    assert [line.split(" ")[0] for line in trans] == [f"slt-0000-000{i}" for i in range(3)]
    assert all(line.split(" ", 1)[1].isupper() for line in trans)
    assert (root / "en_us_f2" / "0000" / "en_us_f2-0000.phones.tsv").is_file()

    corpus = read_corpus(root)
    assert len(corpus) == 5 and not corpus.problems
    assert corpus.speakers() == ["en_us_f2", "slt"]
    for utt in corpus:
        info = sf.info(str(utt.audio_path))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (
            16000,
            1,
            "FLAC",
            "PCM_16",
        )
        assert utt.phones is not None
        check_spans(list(utt.phones), round(info.frames / 16000, 3))
        assert 3 <= len(utt.text.split()) <= 15


def test_deterministic_across_jobs(tiny, tmp_path):
    root, _ = tiny
    other = tmp_path / "two_jobs"
    report = S.synthesize_corpus(other, utterances=5, seed=3, voices=VOICES, jobs=2, progress=False)
    assert report.jobs == 2
    assert _tree(other) == _tree(root)


def test_resume_skips_finished_chapters(tiny, tmp_path):
    root, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    # an interrupted run: one chapter lost its transcript and an audio file
    (copy / "en_us_f2" / "0000" / "en_us_f2-0000.trans.txt").unlink()
    (copy / "en_us_f2" / "0000" / "en_us_f2-0000-0001.flac").unlink()
    kept = copy / "slt" / "0000" / "slt-0000-0000.flac"
    mtime = kept.stat().st_mtime_ns
    report = S.synthesize_corpus(copy, utterances=5, seed=3, voices=VOICES, jobs=1, progress=False)
    assert report.skipped_chapters == 1 and report.synthesized == 2
    assert kept.stat().st_mtime_ns == mtime
    assert _tree(copy) == _tree(root)
    again = S.synthesize_corpus(copy, utterances=5, seed=3, voices=VOICES, jobs=1, progress=False)
    assert again.synthesized == 0 and again.skipped_chapters == 2
    assert "5 utterances" in again.summary()


def test_missing_flite_is_an_error_before_synthesis(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # flite is not on PATH
    out = tmp_path / "c"
    with pytest.raises(GradnapError) as info:
        S.synthesize_corpus(out, utterances=6, seed=0, voices=["slt", "en-us", "rms"], jobs=1)
    message = str(info.value)
    assert "flite voices slt, rms cannot be synthesized" in message
    assert "apt-get install -y flite" in message
    assert not out.exists()  # nothing written
    args = ["corpus", "synth", "--out", str(out), "--utterances", "6", "--voices", "flite"]
    assert main(args) == 2
    assert "apt-get install -y flite" in capsys.readouterr().err and not out.exists()
    # eSpeak voices alone need no flite
    report = S.synthesize_corpus(
        out, utterances=1, seed=0, voices=["en-us"], jobs=1, progress=False
    )
    assert report.complete


def test_rerun_completes_a_partial_corpus(tiny, tmp_path):
    """What an older gradnap left when flite was missing (empty transcript, header-only
    timings, no audio, "complete": true), a lost audio file and a wrong transcript line:
    a rerun makes exactly the missing utterances."""
    root, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    slt = copy / "slt" / "0000"
    for flac in slt.glob("*.flac"):
        flac.unlink()
    (slt / "slt-0000.trans.txt").write_text("")
    (slt / "slt-0000.phones.tsv").write_text("utterance\tstart\tend\tphone\n")
    f2 = copy / "en_us_f2" / "0000"
    (f2 / "en_us_f2-0000-0001.flac").unlink()
    manifest = json.loads((copy / "corpus.json").read_text())
    assert manifest["complete"] is True
    report = S.synthesize_corpus(copy, utterances=5, seed=3, voices=VOICES, jobs=1, progress=False)
    assert (report.synthesized, report.kept, report.skipped_chapters) == (4, 1, 0)
    assert report.complete and _tree(copy) == _tree(root)
    # one wrong transcript line: that utterance is made again, the other one is kept
    trans = f2 / "en_us_f2-0000.trans.txt"
    trans.write_text(trans.read_text().replace("en_us_f2-0000-0000 ", "en_us_f2-0000-0000 NOT "))
    kept = f2 / "en_us_f2-0000-0001.flac"
    mtime = kept.stat().st_mtime_ns
    report = S.synthesize_corpus(copy, utterances=5, seed=3, voices=VOICES, jobs=1, progress=False)
    assert (report.synthesized, report.kept, report.skipped_chapters) == (1, 1, 1)
    assert kept.stat().st_mtime_ns == mtime
    assert "kept 1 finished utterances of unfinished chapters" in report.summary()
    assert _tree(copy) == _tree(root)


def test_other_arguments_for_an_existing_corpus_are_refused(tiny, tmp_path):
    root, _ = tiny
    with pytest.raises(GradnapError, match="other arguments"):
        S.synthesize_corpus(root, utterances=5, seed=4, voices=VOICES, jobs=1, progress=False)
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "x.txt").write_text("x")
    with pytest.raises(GradnapError, match="--jobs"):
        S.synthesize_corpus(tmp_path / "j", utterances=1, seed=0, voices=["slt"], jobs=0)
    with pytest.raises(GradnapError, match="not empty"):
        S.synthesize_corpus(tmp_path / "stuff", utterances=1, seed=0, voices=["slt"], jobs=1)


def test_failed_utterance_is_skipped_and_counted(tmp_path, monkeypatch, capsys):
    real = S.synthesize_utterance

    def flaky(job):
        if job.utt_id.endswith("-0001"):
            raise GradnapError("synthesizer broke")
        return real(job)

    monkeypatch.setattr(S, "synthesize_utterance", flaky)
    root = tmp_path / "c"
    args = ["corpus", "synth", "--out", str(root), "--utterances", "3", "--seed", "0"]
    args += ["--voices", "kal16", "--jobs", "1"]
    assert main(args) == 1  # the corpus is incomplete
    printed = capsys.readouterr().out
    assert "1 utterances failed (skipped)" in printed and "synthesizer broke" in printed
    assert "kal16-0000-0001.flac" in printed
    assert "INCOMPLETE: 1 of 3 utterances missing; run the same command again" in printed
    corpus = read_corpus(root)
    assert [u.id for u in corpus] == ["kal16-0000-0000", "kal16-0000-0002"]
    manifest = json.loads((root / "corpus.json").read_text())
    assert manifest["counts"]["failed"] == 1 and manifest["complete"] is False
    monkeypatch.setattr(S, "synthesize_utterance", real)  # the synthesizer works again
    assert main(args) == 0
    assert "this run: 1 utterances" in capsys.readouterr().out
    assert json.loads((root / "corpus.json").read_text())["complete"] is True
    assert len(read_corpus(root)) == 3


def test_cli_synth_and_info(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["corpus", "synth", "--out", str(out), "--utterances", "2", "--seed", "1"]
    assert main(args + ["--voices", "kal16", "--jobs", "1"]) == 0
    assert "2 utterances" in capsys.readouterr().out
    assert main(["corpus", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "kal16" in text and "rarest phonemes" in text
    assert main(args + ["--voices", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_cli_help(capsys):
    for sub in ("synth", "info"):
        with pytest.raises(SystemExit) as exc:
            main(["corpus", sub, "--help"])
        assert exc.value.code == 0
    assert "--utterances" in capsys.readouterr().out


def test_audio_is_not_silent_and_differs_between_voices(tiny):
    root, _ = tiny
    corpus = read_corpus(root)
    by_speaker = {}
    for utt in corpus:
        x = corpus.audio(utt)
        assert np.sqrt(np.mean(x**2)) > 0.01
        by_speaker.setdefault(utt.speaker, []).append(len(x))
    assert set(by_speaker) == {"slt", "en_us_f2"}


def test_cli_synth_out_that_cannot_be_a_directory_fails_at_once(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "corpus"):
        assert main(["corpus", "synth", "--out", str(out), "--utterances", "2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--out {out}: " in err[0], err
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
