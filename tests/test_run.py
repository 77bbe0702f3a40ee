"""The run loop: shards, merge, checkpoints and resume, corpora, the CLI, torch.distributed (gradnap.method.run)."""

import errno
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from gradnap.asr.modelfile import save_model
from gradnap.cli import main
from gradnap.corpus import read_corpus
from gradnap.defaults import PHONE_SET
from gradnap.errors import GradnapError
from gradnap.method.result import Result, merge_results
from gradnap.method.run import GradNAP, collect
from helpers import (
    FILE_FOLD_RTOL,
    FILE_RTOL,
    LAYERS,
    FrameEngine,
    assert_same_sums,
    disk_full,
    gradnap_of,
    small_data,
    small_model,
    tiny_model,
    write_corpus,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel"),
    pytest.mark.usefixtures("one_thread"),
]


def test_merge_of_two_shards_equals_the_whole():
    model = small_model()
    eng = FrameEngine(model, LAYERS)
    whole = gradnap_of(model, eng).collect(small_data(), progress=False)
    halves = [
        gradnap_of(model, eng).collect(small_data(), shard=f"{i}/2", progress=False) for i in (0, 1)
    ]
    assert [h.meta.progress.utterances for h in halves] == [3, 3]
    merged = merge_results(halves)
    assert_same_sums(merged, whole)
    assert merged.meta.corpus.shards == ((0, 2), (1, 2))
    for key in ("utterances", "frames", "examples"):
        assert merged.meta.progress.__dict__[key] == whole.meta.progress.__dict__[key]
    with pytest.raises(GradnapError, match="appears twice"):
        merge_results([halves[0], halves[1], halves[0]])


def test_checkpoint_and_resume_equal_an_uninterrupted_run(tmp_path):
    model = small_model()
    eng = FrameEngine(model, LAYERS)
    data = small_data()
    full = gradnap_of(model, eng).collect(data, progress=False)

    def crashing():
        for i, item in enumerate(data):
            if i == 4:
                raise KeyboardInterrupt  # killed after 4 utterances
            yield item

    ckpt = tmp_path / "run.ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        gradnap_of(model, eng).collect(
            crashing(), checkpoint=ckpt, checkpoint_every=3, progress=False
        )
    partial = Result.load(ckpt)
    assert not partial.complete and partial.meta.progress.items_done == 3
    resumed = gradnap_of(model, eng).collect(data, checkpoint=ckpt, resume=True, progress=False)
    assert resumed.complete
    for k, v in full.arrays.items():
        assert np.array_equal(v, resumed.arrays[k]), k  # bit for bit
    for key in ("utterances", "frames", "examples", "skipped"):
        assert resumed.meta.progress.__dict__[key] == full.meta.progress.__dict__[key]
    # other data, or other options, cannot resume that checkpoint
    with pytest.raises(GradnapError, match="differ from the checkpoint"):
        gradnap_of(model, eng).collect(data[::-1], checkpoint=ckpt, resume=True, progress=False)
    with pytest.raises(GradnapError, match="target"):
        gradnap_of(model, FrameEngine(model, LAYERS, "logprob"), target="logprob").collect(
            data, checkpoint=ckpt, resume=True, progress=False
        )


def test_collect_over_a_corpus_directory_with_phonemes(tmp_path):
    root = write_corpus(tmp_path / "corpus", n=5)  # plus one corrupt file, left out on reading
    corpus = read_corpus(root)
    (root / "s1" / "c1" / "s1-c1-0002.wav").unlink()  # vanishes before collection: skipped
    model = tiny_model()
    layers = ["input", "layer2", "layer10"]
    r = collect(
        model, corpus, layers=layers, engine="cone", examples="all",
        groupings="grapheme,phoneme,speaker", min_count=1, progress=False,
    )  # fmt: skip
    p = r.meta.progress
    assert (p.utterances, p.skipped) == (4, 2)  # the corrupt file and the vanished one
    assert "s1-c1-0005.wav: cannot read audio" in r.meta.problems[0]
    assert "s1-c1-0002.wav: audio file not found" in r.meta.problems[1]
    assert r.meta.corpus.utterances == 5 and r.meta.corpus.with_phones == 5
    assert r.meta.corpus.reading_problems == 1
    n = p.examples
    assert sum(r.counts("grapheme").values()) == n == r.num_examples
    assert r.counts("speaker") == {"s1": n}
    assert set(r.labels("phoneme")) <= set(PHONE_SET)
    assert sum(r.counts("phoneme").values()) + r.unlabelled("phoneme") == n
    assert r.unlabelled("phoneme") <= 4  # at most the frame past the end of each utterance
    geom = model.geometry
    assert [r.layer_info(n).width for n in layers] == [geom.cone_width(i) for i in (0, 2, 10)]
    assert r.layer_info("input").width == 194 and r.layer_info("layer10").width == 1
    ax = r.axes("input")
    assert ax.frequencies_hz.shape == (128,) and ax.offsets_ms[0] == -97 * 8.0
    assert r.axes("layer2").offsets_ms[1] - r.axes("layer2").offsets_ms[0] == 16.0
    assert r.meta.model.name == "tiny" and len(r.meta.model.weights_sha256) == 64


def test_reading_problems_are_skipped_utterances_once_per_result(tmp_path, capsys):
    """A transcript line without its audio file: counted as skipped and listed in the
    result's problems, once over shards and ranks (shard 0 carries them)."""
    root = write_corpus(tmp_path / "corpus", n=4, broken=False)
    trans = root / "s1" / "c1" / "s1-c1.trans.txt"
    trans.write_text(trans.read_text() + "s1-c1-0009 NO AUDIO\n")
    corpus = read_corpus(root)
    model = tiny_model()
    options = dict(layers=["layer9"], engine="cone", min_count=1, progress=False)
    whole = collect(model, corpus, **options)
    assert (whole.meta.progress.utterances, whole.meta.progress.skipped) == (4, 1)
    (problem,) = whole.meta.problems
    assert "s1-c1-0009.flac: audio file missing" in problem and "s1-c1.trans.txt:5" in problem
    assert "4 utterances, 1 skipped" in whole.summary()
    halves = [collect(model, corpus, shard=f"{i}/2", **options) for i in (0, 1)]
    assert [h.meta.progress.skipped for h in halves] == [1, 0]
    merged = merge_results(halves)
    assert merged.meta.progress.skipped == 1 and merged.meta.problems == (problem,)
    model_path = save_model(tmp_path / "tiny.pt", model)
    out = tmp_path / "r.npz"
    args = ["collect", "--model", str(model_path), "--corpus", str(root), "--out", str(out)]
    layout = ["--fold-span", "0.5", "--fold-bins", "2"]
    assert main([*args, "--layers", "layer9", "--no-progress", *layout]) == 0
    assert "4 utterances, 1 skipped" in capsys.readouterr().out
    back = Result.load(out)
    assert back.meta.problems == (problem,)
    assert (back.meta.options.fold_span, back.meta.options.fold_bins) == (0.5, 2)


def test_phoneme_grouping_without_any_timings(tmp_path, capsys, caplog):
    root = write_corpus(tmp_path / "corpus", n=3, broken=False, phones=False)
    corpus = read_corpus(root)
    model = tiny_model()
    options = dict(layers=["input", "layer9"], engine="cone", min_count=1, progress=False)
    # the only grouping asked for cannot get a single label: an error before any work
    with pytest.raises(GradnapError, match="no utterance has phone timings") as info:
        collect(model, corpus, groupings="phoneme", **options)
    assert f"gradnap corpus align {root}" in str(info.value)
    # with another grouping: collected, with a warning in the log and the result
    r = collect(model, corpus, groupings="grapheme,phoneme", **options)
    assert r.counts("phoneme") == {} and r.counts("grapheme")
    (note,) = r.meta.problems
    assert "no utterance has phone timings" in note and "phoneme grouping stays empty" in note
    assert note in caplog.text and r.meta.progress.skipped == 0
    model_path = save_model(tmp_path / "tiny.pt", model)
    args = [
        "collect",
        "--model",
        str(model_path),
        "--corpus",
        str(root),
        "--layers",
        "input,layer9",
    ]
    out = tmp_path / "r.npz"
    assert main([*args, "--groupings", "phoneme", "--out", str(out), "--no-progress"]) == 2
    assert "no utterance has phone timings" in capsys.readouterr().err and not out.exists()


def test_phoneme_grouping_with_some_timings_missing(tmp_path, caplog):
    root = write_corpus(tmp_path / "corpus", n=2, broken=False, speakers=("s1", "s2"))
    (root / "s2" / "c1" / "s2-c1.phones.tsv").unlink()
    r = collect(
        tiny_model(), read_corpus(root), layers=["input", "layer9"], engine="cone",
        groupings="phoneme", min_count=1, progress=False,
    )  # fmt: skip
    (note,) = r.meta.problems
    assert note == (
        f"{root}: 2 of 4 utterances have no phone timings; their examples get no phoneme label"
    )
    assert note in caplog.text and r.counts("phoneme") and r.unlabelled("phoneme") > 0


def test_cli_collect_shards_and_resume(tmp_path, capsys, monkeypatch):
    root = write_corpus(tmp_path / "corpus", n=4, broken=False)
    model_path = save_model(tmp_path / "tiny.pt", tiny_model())
    common = ["--model", str(model_path), "--corpus", str(root), "--layers", "input,layer9"]
    common += ["--groupings", "grapheme,phoneme", "--examples", "all", "--no-progress"]
    out = tmp_path / "whole.npz"
    assert main(["collect", *common, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "frames/s" in printed and f"wrote {out}" in printed
    whole = Result.load(out)
    assert whole.meta.model.source == str(model_path)
    assert whole.layers == ["input", "layer9"] and whole.meta.progress.utterances == 4
    assert not (tmp_path / "whole.npz.partial").exists()  # the checkpoint is removed

    # shard 0/2 is interrupted after its first utterance, then resumed
    add, calls = GradNAP.add, []

    def interrupted_add(self, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return add(self, *args, **kw)

    monkeypatch.setattr(GradNAP, "add", interrupted_add)
    x = tmp_path / "x.npz"
    shard = ["--shard", "0/2", "--checkpoint-every", "1", "--out", str(x)]
    capsys.readouterr()
    assert main(["collect", *common, *shard]) == 130
    assert capsys.readouterr().err.splitlines() == [
        f"gradnap: the checkpoint {x}.partial after 1 items is kept; continue with --resume",
        "gradnap: interrupted",
    ]
    partial = Result.load(tmp_path / "x.npz.partial")
    assert partial.meta.progress.utterances == 1 and not x.exists()
    assert main(["collect", *common, *shard, "--resume"]) == 0
    assert len(calls) == 3  # one more utterance, not two
    assert not (tmp_path / "x.npz.partial").exists()
    y = tmp_path / "y.npz"
    assert main(["collect", *common, "--shard", "1/2", "--out", str(y)]) == 0
    # files: float32 sums, float16 per-fold means
    assert_same_sums(merge_results([x, y]), whole, rtol=FILE_RTOL, fold_rtol=FILE_FOLD_RTOL)
    capsys.readouterr()
    assert main(["collect", *common, "--layers", "layer99", "--out", str(out)]) == 2
    assert "layer99" in capsys.readouterr().err


def _distributed_worker(rank, world, port, out):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    model = small_model()
    r = gradnap_of(model, FrameEngine(model, LAYERS)).collect(small_data(), progress=False)
    if rank == 0:
        r.save(out)


@pytest.mark.slow
def test_torch_distributed_all_reduce_equals_one_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "dist.npz"
    mp.spawn(_distributed_worker, args=(2, port, out), nprocs=2, join=True)
    model = small_model()
    single = gradnap_of(model, FrameEngine(model, LAYERS)).collect(small_data(), progress=False)
    r = Result.load(out)
    assert_same_sums(r, single, rtol=FILE_RTOL, fold_rtol=FILE_FOLD_RTOL)
    assert r.meta.corpus.world_size == 2 and r.meta.corpus.shards == ((0, 1),)
    assert r.meta.progress.utterances == single.meta.progress.utterances


def test_resume_refuses_a_checkpoint_of_other_window_widths(tmp_path):
    model = small_model()
    eng = FrameEngine(model, LAYERS)
    ckpt = tmp_path / "run.ckpt.npz"
    gradnap_of(model, eng).collect(
        small_data(3), checkpoint=ckpt, checkpoint_every=1, progress=False
    )
    assert ckpt.is_file()
    with pytest.raises(GradnapError, match=r"layers \(\[\('input', 6, 5\)"):
        gradnap_of(model, eng, window={"input": 5}).collect(
            small_data(), checkpoint=ckpt, resume=True, progress=False
        )
    resumed = gradnap_of(model, eng).collect(
        small_data(), checkpoint=ckpt, resume=True, progress=False
    )
    whole = gradnap_of(model, eng).collect(small_data(), progress=False)
    assert_same_sums(resumed, whole, rtol=0)


# --- bad input that must not cost work (docs/robustness.md) -----------------------------------


def _cli_corpus(tmp_path, n=4):
    root = write_corpus(tmp_path / "corpus", n=n, broken=False)
    model_path = save_model(tmp_path / "tiny.pt", tiny_model())
    return ["--model", str(model_path), "--corpus", str(root), "--layers", "input,layer9",
            "--examples", "all", "--no-progress"]  # fmt: skip


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gradnap: error: "), err
    return err[0]


def test_unwritable_out_or_checkpoint_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import gradnap.asr.modelfile

    common = _cli_corpus(tmp_path)

    def no_work(*args, **kw):
        raise AssertionError("the model was loaded: work started before the check")

    monkeypatch.setattr(gradnap.asr.modelfile, "load_model", no_work)
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    assert main(["collect", *common, "--out", str(tmp_path / "a_dir")]) == 2
    assert "a_dir: is a directory" in _one_error_line(capsys)
    assert main(["collect", *common, "--out", str(tmp_path / "a_file" / "r.npz")]) == 2
    assert "a_file is not a directory" in _one_error_line(capsys)
    real_mkstemp = tempfile.mkstemp

    def read_only_mount(*args, dir=None, **kw):
        if "ro" in Path(dir).parts:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_mount)
    (tmp_path / "ro").mkdir()
    ckpt = tmp_path / "ro" / "c.partial"
    out = tmp_path / "r.npz"
    assert main(["collect", *common, "--out", str(out), "--checkpoint", str(ckpt)]) == 2
    line = _one_error_line(capsys)
    assert f"--checkpoint {ckpt}: cannot write (Read-only file system)" in line
    assert main(["collect", *common, "--out", str(tmp_path / "ro" / "r.npz")]) == 2
    assert "ro/r.npz: cannot write (Read-only file system)" in _one_error_line(capsys)


def test_full_disk_at_the_end_keeps_the_collection_for_resume(tmp_path, capsys, monkeypatch):
    common = _cli_corpus(tmp_path)
    ref = tmp_path / "ref.npz"
    assert main(["collect", *common, "--out", str(ref)]) == 0
    out = tmp_path / "r.npz"
    failed = disk_full(monkeypatch, "r.npz")  # the checkpoint's disk has room
    assert main(["collect", *common, "--out", str(out)]) == 2
    assert failed == ["r.npz"]
    line = _one_error_line(capsys)
    ckpt = tmp_path / "r.npz.partial"
    assert f"{out}: cannot write (no space left on device)" in line
    assert f"the checkpoint {ckpt} after 4 items is kept" in line and "--resume" in line
    assert not out.exists() and Result.load(ckpt).meta.progress.items_done == 4
    monkeypatch.undo()  # room again: resume, to another --out, collects nothing again
    add, calls = GradNAP.add, []

    def counted_add(self, *args, **kw):
        calls.append(1)
        return add(self, *args, **kw)

    monkeypatch.setattr(GradNAP, "add", counted_add)
    other = tmp_path / "other.npz"
    assert (
        main(["collect", *common, "--out", str(other), "--resume", "--checkpoint", str(ckpt)]) == 0
    )
    assert calls == [] and not ckpt.exists()
    assert_same_sums(Result.load(other), Result.load(ref), rtol=0)


def test_full_disk_at_a_checkpoint_stops_and_keeps_the_last_one(tmp_path, monkeypatch):
    model = small_model()
    eng = FrameEngine(model, LAYERS)
    data = small_data()
    full = gradnap_of(model, eng).collect(data, progress=False)
    add, calls = GradNAP.add, []

    def counted_add(self, *args, **kw):
        calls.append(1)
        return add(self, *args, **kw)

    monkeypatch.setattr(GradNAP, "add", counted_add)
    ckpt = tmp_path / "run.ckpt.npz"
    disk_full(monkeypatch, after=1)  # the first checkpoint is written, the second is not
    with pytest.raises(GradnapError) as info:
        gradnap_of(model, eng).collect(data, checkpoint=ckpt, checkpoint_every=2, progress=False)
    msg = str(info.value)
    assert msg.startswith(f"{ckpt}: cannot write (no space left on device); the checkpoint {ckpt}")
    assert "after 2 items is kept" in msg and "--resume" in msg
    assert len(calls) == 4  # stopped at once, not at the end of the corpus
    monkeypatch.undo()  # room again
    monkeypatch.setattr(GradNAP, "add", counted_add)
    calls.clear()
    resumed = gradnap_of(model, eng).collect(
        data, checkpoint=ckpt, checkpoint_every=2, resume=True, progress=False
    )
    assert len(calls) == 4  # items 3..6
    for k, v in full.arrays.items():
        assert np.array_equal(v, resumed.arrays[k]), k


def test_stale_temporary_of_a_killed_checkpoint_write_is_removed(tmp_path, caplog):
    model = small_model()
    ckpt = tmp_path / "run.ckpt.npz"
    stale = tmp_path / ".run.ckpt.npz.x1y2z3w4.tmp"  # what kill -9 during a write leaves
    stale.write_bytes(b"\0" * 3_000_000)
    with caplog.at_level(logging.WARNING):
        gradnap_of(model, FrameEngine(model, LAYERS)).collect(
            small_data(2), checkpoint=ckpt, resume=True, progress=False
        )
    assert not stale.exists()
    assert f"removed {stale} (3.0 MB): the temporary file of an interrupted write" in caplog.text
    assert f"resume: no checkpoint {ckpt}; starting from the beginning" in caplog.text


def test_collect_skips_and_names_each_bad_audio_file(tmp_path, monkeypatch, caplog):
    from gradnap import features

    monkeypatch.setattr(features, "_WARNED_RATES", set())  # warned once per process
    root = write_corpus(tmp_path / "corpus", n=2, broken=False, phones=False)
    d = root / "s1" / "c1"
    x = np.random.default_rng(1).normal(0, 0.1, 8000).astype("float32")  # 0.5 s
    lines = []

    def utt(name, write=None, text="HELLO"):
        uid = f"s1-c1-{name}"
        if write is not None:
            write(d / uid)
        lines.append(f"{uid} {text}")
        return uid

    def truncated(suffix):
        def write(p):
            sf.write(p.with_suffix(suffix), x, 16000)
            data = p.with_suffix(suffix).read_bytes()
            p.with_suffix(suffix).write_bytes(data[: len(data) // 2])

        return write

    nan = x.copy()
    nan[100] = np.nan
    kept = {
        utt("stereo", lambda p: sf.write(p.with_suffix(".wav"), np.stack([x, x / 2], 1), 16000)),
        utt("8khz", lambda p: sf.write(p.with_suffix(".wav"), x[::2], 8000)),
        utt("accents", lambda p: sf.write(p.with_suffix(".wav"), x, 16000), "NAÏVE CAFÉ—OK"),
    }
    read_skips = {  # found when the corpus is read
        utt("empty", lambda p: sf.write(p.with_suffix(".wav"), x[:0], 16000)): "holds no samples",
        utt("corrupt", lambda p: p.with_suffix(".flac").write_bytes(b"fLaC junk")): "cannot read",
        utt("digits", lambda p: sf.write(p.with_suffix(".wav"), x, 16000), "ROOM 101"): "'1', '0'",
        utt("missing"): "audio file missing",
    }
    collect_skips = {  # found when the audio is loaded or run through the model
        utt("nan", lambda p: sf.write(p.with_suffix(".wav"), nan, 16000, subtype="FLOAT")): (
            "1 of 8000 samples are NaN or infinite"
        ),
        utt(
            "short", lambda p: sf.write(p.with_suffix(".wav"), x[:1], 16000)
        ): "too few for the model",
        utt("trunc-flac", truncated(".flac")): "cannot read audio",
        utt("trunc-wav", truncated(".wav")): "truncated WAV file",
        utt(
            "vanished", lambda p: sf.write(p.with_suffix(".wav"), x, 16000)
        ): "audio file not found",
    }
    with open(d / "s1-c1.trans.txt", "a") as f:
        f.write("\n".join(lines) + "\n")
    corpus = read_corpus(root)
    assert len(corpus.problems) == len(read_skips)
    for uid, words in read_skips.items():
        assert any(uid in p and words in p for p in corpus.problems), (uid, corpus.problems)
    (d / "s1-c1-vanished.wav").unlink()
    with caplog.at_level(logging.WARNING):
        r = collect(
            tiny_model(), corpus, layers=["input", "layer9"], engine="cone", examples="all",
            groupings="grapheme", min_count=1, progress=False,
        )  # fmt: skip
    assert caplog.text.count("resampled to 16000 Hz: it holds nothing above 4000 Hz") == 1
    p = r.meta.progress
    assert (p.utterances, p.skipped) == (2 + len(kept), len(read_skips) + len(collect_skips))
    assert r.meta.corpus.reading_problems == len(read_skips)
    for uid, words in read_skips.items():  # also named in the result
        assert any(uid in m and words in m for m in r.meta.problems), uid
    for uid, words in collect_skips.items():
        # each problem starts with the audio file's path
        assert any(m.startswith(str(d / uid)) and words in m for m in r.meta.problems), uid
    assert {u.id for u in corpus.utterances} >= kept
    eight = next(u for u in corpus.utterances if u.id == "s1-c1-8khz")
    assert corpus.features(eight).shape[1] == 1 + 8000 // 128  # resampled to 16 kHz
    accents = next(u for u in corpus.utterances if u.id == "s1-c1-accents")
    assert accents.text == "naive cafe ok"


def test_all_utterances_skipped_says_why(tmp_path):
    root = write_corpus(tmp_path / "corpus", n=2, broken=False, phones=False)
    corpus = read_corpus(root)
    for u in corpus.utterances:
        u.audio_path.unlink()
    with pytest.raises(
        GradnapError,
        match=r"all 2 utterances were skipped \(the first: .*0000.wav: audio file not found\)",
    ):
        collect(tiny_model(), corpus, layers=["layer9"], engine="cone", progress=False)


def test_unknown_layers_and_unusable_models_are_one_line_errors(tmp_path, capsys):
    common = _cli_corpus(tmp_path, n=1)
    out = ["--out", str(tmp_path / "r.npz")]
    assert main(["collect", *common, "--layers", "input,layer99", *out]) == 2
    line = _one_error_line(capsys)
    assert "unknown layer name(s) 'layer99'" in line and "valid names are: input, layer1" in line
    i = common.index("--model") + 1
    model = Path(common[i])
    bad = {
        "truncated.pt": (model.read_bytes()[:5000], "truncated or corrupt checkpoint"),
        "text.pt": (b"hello", "not a PyTorch checkpoint"),
        "empty.pt": (b"", "empty file"),
    }
    for name, (data, words) in bad.items():
        (tmp_path / name).write_bytes(data)
        args = [*common[:i], str(tmp_path / name), *common[i + 1 :]]
        assert main(["collect", *args, *out]) == 2
        line = _one_error_line(capsys)
        assert f"{tmp_path / name}: {words}" in line, line
    assert not (tmp_path / "r.npz").exists() and not (tmp_path / "r.npz.partial").exists()


def test_checkpoints_wait_for_the_first_usable_utterance(tmp_path):
    model = small_model()
    eng = FrameEngine(model, LAYERS)
    data = ["junk"] * 3 + small_data(3)  # three malformed items first: nothing to checkpoint
    ckpt = tmp_path / "run.ckpt.npz"
    r = gradnap_of(model, eng).collect(data, checkpoint=ckpt, checkpoint_every=2, progress=False)
    assert (r.meta.progress.utterances, r.meta.progress.skipped) == (3, 3)
    assert Result.load(ckpt).meta.progress.items_done == 6  # the last one: after item 6
