import json
import zipfile

import numpy as np
import pytest
import torch

from gradnap.cli import main
from gradnap.errors import GradnapError
from gradnap.method.result import Result, merge_results
from helpers import LAYERS, FrameEngine, disk_full, gradnap_of, small_data, small_model

pytestmark = [
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def result():
    torch.set_num_threads(1)
    model = small_model()
    return gradnap_of(model, FrameEngine(model, LAYERS), min_count=3).collect(
        small_data(), progress=False
    )


def test_round_trip_with_numpy_alone(result, tmp_path):
    path = result.save(tmp_path / "run.npz")
    with np.load(path) as z:  # allow_pickle=False: plain arrays and one JSON string
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").item())
    assert meta["format"] == "gradnap-result" and meta["gradnap_version"]
    assert [d["name"] for d in meta["layers"]] == LAYERS
    # a GradNAP from the raw arrays with plain numpy, as docs/results.md describes it
    layer, grouping = "1", "parity"
    labels = arrays[f"sums/{grouping}/labels"].tolist()
    # format 4: totals (G, C, W), (G, W), stored as float32 in a complete result
    act = arrays[f"sums/{grouping}/{layer}/act_sum"].astype(np.float64)  # (G, C, W)
    assert arrays[f"sums/{grouping}/{layer}/act_sum"].dtype == np.float32
    grad = arrays[f"sums/{grouping}/{layer}/grad_sum"].astype(np.float64)
    count = arrays[f"sums/{grouping}/{layer}/count"][:, None, :]  # (G, 1, W)
    M = act.sum(0) / np.maximum(count.sum(0), 1)
    for g, label in enumerate(labels):
        a = np.where(count[g] > 0, act[g] / np.maximum(count[g], 1), M)
        s = np.abs(np.where(count[g] > 0, grad[g] / np.maximum(count[g], 1), 0))
        expected = (a - M) * s / s.max()
        np.testing.assert_allclose(
            result.profile(layer, label, grouping), expected, rtol=1e-5, atol=1e-6
        )
    # the Result reads back what was written (float sums rounded to float32, read as float64)
    back = Result.load(path)
    assert back.meta == result.meta
    assert set(back.arrays) == set(result.arrays)
    for k, v in result.arrays.items():
        assert back.arrays[k].dtype == v.dtype, k
        if k.endswith(("/fold_act", "/fold_grad")):
            # per-fold sums: float16 means (scaled per array) times the exact counts
            assert arrays[k].dtype == np.float16 and arrays[k + "_scale"].shape == v.shape[2:3]
            count = result.arrays[k.rpartition("/")[0] + "/fold_count"][..., None, :]
            top = np.abs(v / np.maximum(count, 1)).max(axis=(0, 1, 3))[:, None]
            tol = 2.0**-11 * np.abs(v) + 2.0**-24 * top * count + 1e-12
            assert np.all(np.abs(back.arrays[k] - v) <= tol), k
            continue
        stored = v.astype(np.float32) if v.dtype == np.float64 and k.startswith("sums/") else v
        assert np.array_equal(back.arrays[k], stored), k
    # a checkpoint (incomplete result) keeps float64: a resumed run equals an uninterrupted one
    ckpt = Result(result.meta.replace(complete=False), result.arrays).save(tmp_path / "c.npz")
    for k, v in Result.load(ckpt).arrays.items():
        assert np.array_equal(v, result.arrays[k]), k


def test_profiles_axes_and_errors(result):
    assert result.groupings == ["grapheme", "parity"]
    kept = result.groups("parity")
    assert set(result.profiles("input", "parity")) == set(kept)
    p = result.profile("input", "even", kind="navai")
    assert p.shape == (6, result.layer_info("input").width)
    np.testing.assert_array_equal(result.navai("even"), p)
    assert result.nap("3", "odd").shape == (8, 1)
    ax = result.axes("1")
    assert ax.neurons.tolist() == list(range(8)) and ax.frequencies_hz is None
    assert ax.offsets_ms.tolist() == (ax.offsets * 2 * 8.0).tolist()  # jump 2 (stride 2)
    with pytest.raises(GradnapError, match="unknown layer 'x'.*input, 1, 3"):
        result.profile("x", "even")
    with pytest.raises(GradnapError, match="no grouping has a group 'zz'"):
        result.profile("1", "zz")
    with pytest.raises(GradnapError, match="input layer"):
        result.profile("1", "even", kind="navai")
    with pytest.raises(GradnapError, match="unknown grouping"):
        result.counts("phoneme")
    with pytest.raises(GradnapError, match="unknown profile kind"):
        result.profile("1", "even", kind="nope")
    # the dataset-wide grouping: every example, one group
    assert result.counts("all") == {"all": result.num_examples}
    np.testing.assert_allclose(
        result.dataset_mean("1"), result.dataset_mean("1", "grapheme"), rtol=1e-6
    )


def test_ambiguous_labels_need_a_grouping():
    model = small_model()

    def letters(utt, frame, cls):
        return "abcde"[cls]

    r = gradnap_of(model, FrameEngine(model, LAYERS), groupings=("grapheme", letters)).collect(
        small_data(3), progress=False
    )
    label = r.labels("letters")[0]
    with pytest.raises(GradnapError, match="several groupings"):
        r.profile("1", label)
    np.testing.assert_array_equal(
        r.profile("1", label, "letters", min_count=0),
        r.profile("1", label, "grapheme", min_count=0),
    )


def test_random_label_groupings_do_not_make_real_labels_ambiguous(tmp_path):
    from gradnap.method.groupings import is_random_label, random_label_grouping

    model = small_model()
    chance = random_label_grouping(list("abcde"), name="chance_grapheme")
    unmarked = random_label_grouping(list("abcde"), seed=1, name="shuffled")  # by its type
    groupings = ("grapheme", chance, unmarked)
    # with folds, random-label groupings keep per-fold sums only: no profiles to mix up
    r = gradnap_of(model, FrameEngine(model, LAYERS), groupings=groupings).collect(
        small_data(3), progress=False
    )
    assert not r.has_profiles("shuffled") and r.has_profiles("grapheme")
    with pytest.raises(GradnapError, match="keeps per-fold sums only"):
        r.profile("1", r.labels("shuffled")[0], "shuffled", min_count=0)
    # without folds they keep totals, and the real grouping wins
    r = gradnap_of(model, FrameEngine(model, LAYERS), groupings=groupings, folds=1).collect(
        small_data(3), progress=False
    )
    assert [g for g in r.groupings if is_random_label(g)] == ["chance_grapheme"]
    for result in (r, Result.load(r.save(tmp_path / "r.npz"))):
        label = result.labels("grapheme")[0]
        assert label in result.labels("chance_grapheme") and label in result.labels("shuffled")
        np.testing.assert_array_equal(  # the real grouping wins
            result.profile("1", label, min_count=0),
            result.profile("1", label, "grapheme", min_count=0),
        )
        assert not np.array_equal(  # ... and the random ones are still there by name
            result.profile("1", label, "shuffled", min_count=0),
            result.profile("1", label, "grapheme", min_count=0),
        )


def test_unreadable_files_are_reported(tmp_path):
    with pytest.raises(GradnapError, match="not found"):
        Result.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(GradnapError, match="bad.npz: not a gradnap result file"):
        Result.load(bad)
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(GradnapError, match="other.npz: not a gradnap result"):
        Result.load(tmp_path / "other.npz")


def test_merge_refuses_incompatible_results(result):
    model = small_model(seed=5)  # other weights
    other = gradnap_of(model, FrameEngine(model, LAYERS)).collect(small_data(2), progress=False)
    with pytest.raises(GradnapError, match="model weights"):
        merge_results([result, other])
    model = small_model()
    other = gradnap_of(model, FrameEngine(model, LAYERS, "logit"), target="logit").collect(
        small_data(2), progress=False
    )
    with pytest.raises(GradnapError, match=r"target \('prob' vs 'logit'\)"):
        merge_results([result, other])
    other = gradnap_of(model, FrameEngine(model, LAYERS), groupings="grapheme").collect(
        small_data(2), progress=False
    )
    with pytest.raises(GradnapError, match="groupings"):
        merge_results([result, other])


def test_merge_cli_adds_shards(tmp_path, capsys):
    model = small_model()
    eng = FrameEngine(model, LAYERS)
    whole = gradnap_of(model, eng).collect(small_data(), progress=False)
    paths = []
    for i in range(3):
        r = gradnap_of(model, eng).collect(small_data(), shard=f"{i}/3", progress=False)
        paths.append(r.save(tmp_path / f"shard{i}.npz"))
    out = tmp_path / "merged.npz"
    assert main(["merge", *map(str, paths), "--out", str(out)]) == 0
    assert "merged 3 results" in capsys.readouterr().out
    merged = Result.load(out)
    assert merged.meta.corpus.shards == ((0, 3), (1, 3), (2, 3))
    for g in ("grapheme", "parity", "all"):
        assert merged.counts(g) == whole.counts(g)
        for layer in LAYERS:
            for label in whole.labels(g):
                for kind in ("gradnap", "nap", "activation"):
                    np.testing.assert_allclose(
                        merged.profile(layer, label, g, kind, min_count=0),
                        whole.profile(layer, label, g, kind, min_count=0),
                        rtol=1e-5,  # shard files hold float32 sums
                        atol=1e-6,
                    )
    assert main(["merge", str(paths[0]), str(paths[0]), "--out", str(out)]) == 2
    assert "appears twice" in capsys.readouterr().err


def test_version_1_files_load_as_one_fold(result, tmp_path):
    import json as _json

    from gradnap.analysis.crossval import fold_profiles
    from gradnap.errors import GradnapError
    from gradnap.method.result import Result

    path = result.save(tmp_path / "v3.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = _json.loads(arrays.pop("meta").item())
    meta["format_version"] = 1
    for key in ("folds", "fold_key", "fold_bins", "fold_span"):
        del meta["options"][key]
    # version 1: the totals alone
    v1 = {k: v for k, v in arrays.items() if not k.rsplit("/", 1)[-1].startswith("fold_")}
    np.savez(tmp_path / "v1.npz", meta=np.array(_json.dumps(meta)), **v1)
    old = Result.load(tmp_path / "v1.npz")
    assert old.folds == 1
    for g in result.groupings:
        for layer in result.layers:
            for label, p in result.profiles(layer, g).items():
                np.testing.assert_allclose(old.profile(layer, label, g), p, rtol=1e-5, atol=1e-6)
    with pytest.raises(GradnapError, match="collect again"):
        fold_profiles(old, result.layers[-1], result.groupings[0])
    # saved again, it is a version-4 file of one fold
    again = Result.load(old.save(tmp_path / "again.npz"))
    assert again.folds == 1 and again.meta.format_version == 4


def test_version_3_files_keep_their_time_bins(tmp_path):
    """Format 3: per-fold sums in 6 equal time bins as float32 sums, no ``fold_span``."""
    from gradnap.analysis.crossval import fold_profiles
    from gradnap.method.accumulators import FORMAT3_LAYOUT, decode_fold_arrays

    torch.set_num_threads(1)
    model = small_model()
    binned = gradnap_of(
        model, FrameEngine(model, LAYERS), min_count=3, fold_bins=6, fold_span=0.0
    ).collect(small_data(), progress=False)
    path = binned.save(tmp_path / "v4.npz")
    with np.load(path) as z:
        arrays = decode_fold_arrays({k: z[k] for k in z.files if k != "meta"})
        meta = json.loads(z["meta"].item())
    meta["format_version"] = 3
    del meta["options"]["fold_span"]
    v3 = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in arrays.items()}
    np.savez(tmp_path / "v3.npz", meta=np.array(json.dumps(meta)), **v3)
    old = Result.load(tmp_path / "v3.npz")
    assert (old.meta.options.fold_bins, old.meta.options.fold_span) == (6, 0.0)
    assert old.meta.format_version == 4 and old.folds == binned.folds
    layer = LAYERS[0]
    width = old.layer_info(layer).width
    fold_act = old.fold_sums(layer, "parity", "act_sum")
    assert fold_act.shape[-1] == FORMAT3_LAYOUT.size(width)
    np.testing.assert_allclose(fold_act, binned.fold_sums(layer, "parity", "act_sum"), rtol=1e-3)
    np.testing.assert_allclose(
        fold_profiles(old, layer, "parity").profiles,
        fold_profiles(Result.load(path), layer, "parity").profiles,
        rtol=1e-5,
        atol=1e-7,
    )
    # and written again (format 4), it keeps its layout
    again = Result.load(old.save(tmp_path / "again.npz"))
    assert again.meta.options == old.meta.options


def _result_file_variants(result, tmp_path):
    """{name: (path, words of the error)} of files that are not usable result files."""
    good = result.save(tmp_path / "good.npz")
    data = good.read_bytes()
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").item())
    files = {}

    def make(name, write, words):
        path = tmp_path / name
        write(path)
        files[name] = (path, words)

    make("text.npz", lambda p: p.write_text("hello\n"), "not a gradnap result file (not an .npz")
    make("empty.npz", lambda p: p.write_bytes(b""), "empty file")
    make("array.npy", lambda p: np.save(p, np.zeros(3)), "a single .npy array")
    make("truncated.npz", lambda p: p.write_bytes(data[: len(data) // 2]), "truncated or corrupt")
    flipped = bytearray(data)
    with zipfile.ZipFile(good) as z:  # one bad byte inside the largest array: a CRC error
        big = max(z.infolist(), key=lambda i: i.compress_size)
    head = big.header_offset  # local header: 30 bytes, the name, the extra field
    names = int.from_bytes(data[head + 26 : head + 28], "little")
    extra = int.from_bytes(data[head + 28 : head + 30], "little")
    flipped[head + 30 + names + extra + big.compress_size // 2] ^= 0xFF
    make("corrupt.npz", lambda p: p.write_bytes(bytes(flipped)), "truncated or corrupt")
    make(
        "objects.npz",
        lambda p: np.savez(p, x=np.array([{}], dtype=object)),
        "holds Python objects (pickles)",
    )
    make("other.npz", lambda p: np.savez(p, x=np.zeros(2)), "without a 'meta' entry")
    newer = json.dumps(dict(meta, format_version=99))
    make(
        "newer.npz",
        lambda p: np.savez(p, meta=np.array(newer), **arrays),
        "result format version 99 is newer than this gradnap reads (4); upgrade gradnap",
    )
    fewer = {k: v for k, v in arrays.items() if not k.endswith("/grad_sum")}
    make(
        "damaged.npz",
        lambda p: np.savez(p, meta=np.array(json.dumps(meta)), **fewer),
        "damaged result file: lacks 9 arrays (sums/grapheme/input/grad_sum",
    )
    make("dir.npz", lambda p: p.mkdir(), "is a directory, not a result file")
    return files


def test_non_result_files_say_what_is_wrong(result, tmp_path, capsys):
    for name, (path, words) in _result_file_variants(result, tmp_path).items():
        with pytest.raises(GradnapError) as info:
            Result.load(path)
        assert str(info.value).startswith(f"{path}: ") and words in str(info.value), name
        # the command line says the same in one line, and writes nothing
        assert main(["report", str(path), "--out", str(tmp_path / "rep")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"gradnap: error: {info.value}"], name
    assert not (tmp_path / "rep").exists()


def test_merge_of_mismatched_results_is_one_line_naming_the_files(result, tmp_path, capsys):
    model = small_model(seed=5)  # other weights
    other = gradnap_of(model, FrameEngine(model, LAYERS)).collect(small_data(2), progress=False)
    a, b = result.save(tmp_path / "a.npz"), other.save(tmp_path / "b.npz")
    out = tmp_path / "m.npz"
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"gradnap: error: merge: {b} differs from {a} in model weights; "
        "only results of the same model, layers, groupings and options add up"
    ]
    assert main(["merge", str(a), str(a), "--out", str(out)]) == 2
    assert f"({a} and {a}; its examples" in capsys.readouterr().err
    assert not out.exists()


def test_merge_and_report_check_their_out_first_and_survive_a_full_disk(
    result, tmp_path, capsys, monkeypatch
):
    a = result.save(tmp_path / "a.npz")
    (tmp_path / "file").write_text("x")
    loads = []
    real_load = Result.load.__func__
    monkeypatch.setattr(
        Result, "load", classmethod(lambda cls, p: loads.append(p) or real_load(cls, p))
    )
    assert main(["merge", str(a), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["report", str(a), "--out", str(tmp_path / "file")]) == 2
    assert "file: is a file, not a directory" in capsys.readouterr().err
    assert loads == []  # nothing was read before the checks
    failed = disk_full(monkeypatch, "m.npz")
    assert main(["merge", str(a), "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gradnap: error: {tmp_path / 'm.npz'}: cannot write (no space left on device)"]
    assert failed == ["m.npz"] and a.is_file()
