from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from gradnap.asr.modelfile import save_model
from gradnap.cli import main
from gradnap.corpus import read_corpus
from gradnap.defaults import PHONE_SET
from gradnap.errors import GradnapError
from gradnap.method.collector import model_geometry
from gradnap.method.result import Result, merge_results
from gradnap.method.run import GradNAP, collect
from helpers import (
    LAYERS,
    FrameEngine,
    gradnap_of,
    items,
    parity,
    small_data,
    small_model,
    tiny_model,
    write_corpus,
)


def conv(cin, cout, k, weight, **kw):
    c = nn.Conv1d(cin, cout, k, bias=False, **kw)
    with torch.no_grad():
        c.weight.copy_(torch.tensor(weight, dtype=torch.float32))
    return c


# --- known answers on hand-built models -------------------------------------------------------


def test_known_answer_input_layer_linear_model():
    # logit_0 = x, logit_1 (blank) = -x: examples are the frames with x > 0, and the
    # sensitivity of logit_0 at frame tau is 1 at input position tau and 0 elsewhere.
    model = nn.Sequential(conv(1, 2, 3, [[[0, 1, 0]], [[0, -1, 0]]], padding=1))
    x = torch.tensor([[1.0, -2.0, 3.0, 4.0]])  # examples tau = 0 (even), 2 (even), 3 (odd)
    nap = GradNAP(
        model, ["input"], target="logit", groups=parity, blank=1, min_count=0,
        engine=FrameEngine(model, ["input"], "logit"),
    )  # fmt: skip
    r = nap.collect(items([x]), progress=False)
    assert r.counts("parity") == {"even": 2, "odd": 1}
    # windows (W = 3, centred on t* = tau): tau 0 -> [-, 1, -2]; 2 -> [-2, 3, 4]; 3 -> [3, 4, -]
    # M = [0.5, 8/3, 1]; Ā_even = [-2, 2, 1]; Ā_odd = [3, 4, (no data)]; Ḡ = [0, 1, 0]
    np.testing.assert_allclose(r.profile("input", "even"), [[0, 2 - 8 / 3, 0]], atol=1e-12)
    np.testing.assert_allclose(r.profile("input", "odd"), [[0, 4 - 8 / 3, 0]], atol=1e-12)
    np.testing.assert_allclose(r.navai("even"), [[-2.5, 2 - 8 / 3, 0]], atol=1e-12)
    np.testing.assert_allclose(r.navai("odd"), [[2.5, 4 - 8 / 3, 0]], atol=1e-12)
    np.testing.assert_allclose(r.dataset_mean("input", "parity"), [[0.5, 8 / 3, 1]])
    # NAPs: sorted windows [1, -2, -], [4, 3, -2], [4, 3, -]; neuron std over the 7 values
    std = np.sqrt(292) / 7
    np.testing.assert_allclose(r.nap("input", "even"), [[-0.5 / std, -5 / 6 / std, 0]])
    np.testing.assert_allclose(r.nap("input", "odd"), [[1 / std, 5 / 3 / std, 0]])
    ax = r.axes("input")
    assert ax.offsets.tolist() == [-1, 0, 1] and ax.offsets_ms.tolist() == [-8.0, 0.0, 8.0]
    assert r.layer_info("input").width_source == "cone"


def test_known_answer_hidden_layer_alignment():
    # A = relu(x); logit_0[tau] = A[tau-1] + 2 A[tau] + A[tau+1]; logit_1 (blank) = 0.5
    c2 = conv(1, 2, 3, [[[1, 2, 1]], [[0, 0, 0]]], padding=1)
    c2.bias = nn.Parameter(torch.tensor([0.0, 0.5]))
    model = nn.Sequential(conv(1, 1, 1, [[[1.0]]]), nn.ReLU(), c2)
    x = torch.tensor([[0.0, 1, 5, 0, 0, 0, 2, -3]])  # A = [0, 1, 5, 0, 0, 0, 2, 0]
    nap = GradNAP(
        model, ["1"], target="logit", groups=("grapheme", parity), blank=1, min_count=0,
        engine=FrameEngine(model, ["1"], "logit"), naps=False,
    )  # fmt: skip
    r = nap.collect(items([x]), progress=False)
    # examples tau = 0 1 2 3 5 6 7 (tau 4 is blank); t* = argmax |S| * A over the cone:
    # 1 2 2 2 6 6 6. Windows of A and S (W = 3) by hand:
    A = {
        0: [0, 1, 5],
        1: [1, 5, 0],
        2: [1, 5, 0],
        3: [1, 5, 0],
        5: [0, 2, 0],
        6: [0, 2, 0],
        7: [0, 2, 0],
    }
    S = {
        0: [2, 1, 0],
        1: [2, 1, 0],
        2: [1, 2, 1],
        3: [0, 1, 2],
        5: [2, 1, 0],
        6: [1, 2, 1],
        7: [0, 1, 2],
    }
    M = np.mean([A[t] for t in A], axis=0)
    for label, taus in (("even", [0, 2, 6]), ("odd", [1, 3, 5, 7])):
        a = np.mean([A[t] for t in taus], axis=0)
        g = np.abs(np.mean([S[t] for t in taus], axis=0))
        np.testing.assert_allclose(r.profile("1", label), [(a - M) * g / g.max()], atol=1e-12)
        np.testing.assert_allclose(r.profile("1", label, kind="gradient"), [g], atol=1e-12)
    assert r.counts("grapheme") == {"a": 7}
    assert r.profile("1", "a").tolist() == [[0.0, 0.0, 0.0]]  # one group: Ā = M


# --- engines and window kinds -------------------------------------------------------------


pytestmark = [
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel"),
    pytest.mark.usefixtures("one_thread"),
]


def by_label(r: Result):
    """{(grouping, label, array name): array} (label order independent)."""
    out = {}
    for g in r.groupings + ["all"]:
        for i, label in enumerate(r.labels(g)):
            for k, v in r.arrays.items():
                if k.startswith(f"sums/{g}/") and k != f"sums/{g}/labels":
                    out[(g, label, k)] = v[i]
    return out


def assert_same_sums(a: Result, b: Result, rtol=1e-10):
    x, y = by_label(a), by_label(b)
    assert set(x) == set(y)
    for k in x:
        if x[k].dtype.kind == "i":
            assert np.array_equal(x[k], y[k]), k
        else:
            np.testing.assert_allclose(x[k], y[k], rtol=rtol, atol=rtol * 1e-3, err_msg=str(k))


def test_cone_and_whole_layer_windows_give_identical_profiles():
    model = small_model()
    geom = model_geometry(FrameEngine(model, LAYERS), LAYERS)
    assert geom is not None and geom[1] == {"input": 0, "1": 1, "3": 2}
    whole = gradnap_of(model, FrameEngine(model, LAYERS)).collect(small_data(), progress=False)
    cone = gradnap_of(model, FrameEngine(model, LAYERS, cone=geom)).collect(
        small_data(), progress=False
    )
    for k, v in whole.arrays.items():
        assert np.array_equal(v, cone.arrays[k]), k  # same gradients, same arithmetic
    assert [whole.layer_info(n).width for n in LAYERS] == [
        geom[0].cone_width(i) for i in range(3)
    ]


@pytest.mark.parametrize("kind", ["cone", "autograd"])
def test_real_engines_match_the_reference(kind):
    model = small_model()
    ref = gradnap_of(model, FrameEngine(model, LAYERS)).collect(small_data(), progress=False)
    got = gradnap_of(model, kind).collect(small_data(), progress=False)
    assert_same_sums(ref, got, rtol=1e-4)


def test_unknown_layer_names_are_rejected_with_the_valid_ones():
    with pytest.raises(GradnapError, match=r"'nope'.*valid names.*input.*0.*1.*2.*3.*4"):
        GradNAP(small_model(), ["input", "nope"])


class ShiftedReLU(nn.Module):
    """An activation the chain extractor does not know: no known geometry."""

    def forward(self, x):
        return torch.relu(x - 0.1)


def test_estimated_windows_for_a_model_without_known_geometry():
    reference = small_model()
    model = small_model()
    model[1], model[3] = ShiftedReLU(), ShiftedReLU()
    assert model_geometry(FrameEngine(model, LAYERS), LAYERS) is None
    nap = GradNAP(model, LAYERS, engine=FrameEngine(model, LAYERS), examples="all", blank=4)
    r = nap.collect(small_data(), progress=False)
    geom = model_geometry(FrameEngine(reference, LAYERS), LAYERS)[0]
    for i, name in enumerate(LAYERS):
        info = r.layer_info(name)
        assert info.width_source == "estimated"
        assert info.width == geom.cone_width(i)
        assert info.jump == pytest.approx(geom.jump(i))
    clock = r.meta.clock
    assert clock.stride == 2.0 and clock.offset == pytest.approx(geom.centre(0, 3))
    # a given width wins over the estimate
    nap = GradNAP(model, LAYERS, engine=FrameEngine(model, LAYERS), blank=4, window={"3": 3})
    assert nap.collect(small_data(3), progress=False).layer_info("3").width == 3


class Centred(nn.Module):
    """Subtracts the utterance mean: every output frame depends on the whole input."""

    def forward(self, x):
        return x - x.mean(dim=2, keepdim=True)


def test_window_estimation_failure_is_fatal_unless_widths_are_given():
    model = small_model()
    model.insert(0, Centred())  # layers shift by one: "2" and "4" are the ReLUs
    layers = ["input", "2", "4"]
    nap = GradNAP(model, layers, engine=FrameEngine(model, layers), examples="all", blank=4)
    with pytest.raises(GradnapError, match="cannot estimate the window widths"):
        nap.collect(small_data(), progress=False)  # a configuration error, not skipped
    nap = GradNAP(
        model, layers, engine=FrameEngine(model, layers), examples="all", blank=4,
        window={"input": 13, "2": 5, "4": 1},
    )  # fmt: skip
    r = nap.collect(small_data(), progress=False)
    assert r.meta.progress.skipped == 0
    assert [r.layer_info(n).width for n in layers] == [13, 5, 1]


# --- corpus loop: skipping, sharding, merging, checkpoints -------------------------------------


def test_broken_utterances_are_skipped_and_counted():
    model = small_model()
    good = small_data(3)
    bad = [
        (SimpleNamespace(id="nan"), torch.full((6, 20), float("nan"))),
        (SimpleNamespace(id="flat"), torch.randn(20)),
        (SimpleNamespace(id="bins"), torch.randn(5, 20)),
        "not a pair",
    ]
    data = good[:1] + bad + good[1:]
    r = gradnap_of(model, FrameEngine(model, LAYERS)).collect(data, progress=False)
    p = r.meta.progress
    assert (p.utterances, p.skipped) == (3, 4)
    msgs = " | ".join(r.meta.problems)
    for word in (
        "nan: features contain NaN",
        "flat: features must be (F, T)",
        "bins: 5 feature bins",
        "item 4",
    ):
        assert word in msgs
    clean = gradnap_of(model, FrameEngine(model, LAYERS)).collect(good, progress=False)
    assert_same_sums(r, clean, rtol=0)


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


def test_min_count_leaves_groups_out_and_reports_them():
    model = small_model()
    r = gradnap_of(model, FrameEngine(model, LAYERS), min_count=1000).collect(
        small_data(), progress=False
    )
    counts = r.counts("parity")
    assert r.groups("parity") == [] and r.left_out("parity") == dict(sorted(counts.items()))
    assert "left out: even" in r.summary()
    assert r.profiles("1", "parity") == {}
    with pytest.raises(GradnapError, match="min_count 1000"):
        r.profile("1", "even")
    assert set(r.profiles("1", "parity", min_count=0)) == {"even", "odd"}
    n = counts["even"]
    assert r.groups("parity", min_count=n) == (["even"] if counts["odd"] < n else ["even", "odd"])


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
        groups="grapheme,phoneme,speaker", min_count=1, progress=False,
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
    common += ["--groups", "grapheme,phoneme", "--examples", "all", "--no-progress"]
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
    assert_same_sums(merge_results([x, y]), whole, rtol=1e-9)
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
    assert_same_sums(r, single)
    assert r.meta.corpus.world_size == 2 and r.meta.corpus.shards == ((0, 1),)
    assert r.meta.progress.utterances == single.meta.progress.utterances
