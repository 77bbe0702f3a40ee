"""The run loop: shards, merge, checkpoints and resume, corpora, the CLI, torch.distributed (gradnap.method.run)."""

import numpy as np
import pytest
import torch

from gradnap.asr.modelfile import save_model
from gradnap.cli import main
from gradnap.corpus import read_corpus
from gradnap.defaults import PHONE_SET
from gradnap.errors import GradnapError
from gradnap.method.result import Result, merge_results
from gradnap.method.run import GradNAP, collect
from helpers import (
    FILE_RTOL,
    LAYERS,
    FrameEngine,
    assert_same_sums,
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
    assert (p.utterances, p.skipped) == (4, 1)
    assert "s1-c1-0002.wav: audio file not found" in r.meta.problems[0]
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
    assert main(["collect", *common, *shard]) == 130
    partial = Result.load(tmp_path / "x.npz.partial")
    assert partial.meta.progress.utterances == 1 and not x.exists()
    assert main(["collect", *common, *shard, "--resume"]) == 0
    assert len(calls) == 3  # one more utterance, not two
    assert not (tmp_path / "x.npz.partial").exists()
    y = tmp_path / "y.npz"
    assert main(["collect", *common, "--shard", "1/2", "--out", str(y)]) == 0
    assert_same_sums(merge_results([x, y]), whole, rtol=FILE_RTOL)  # files: float32
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
    assert_same_sums(r, single, rtol=FILE_RTOL)  # the file holds float32
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
