"""``gradnap demo`` end to end on a tiny configuration."""

from dataclasses import replace

import pytest
import torch

from gradnap.defaults import DEMO, METHOD
from gradnap.method.result import Result
from gradnap.report.demo import chance_groupings, run_demo
from helpers import tiny_model


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    model = tiny_model()
    config = replace(DEMO, utterances=8, seed=5, min_count=1, folds=4)
    out = run_demo(
        tmp_path / "report",
        config=config,
        corpus_dir=tmp_path / "corpus",
        model=model,
        progress=False,
    )
    assert out.index.is_file() and out.result_file.is_file()
    result = Result.load(out.result_file)
    assert {"grapheme", "phoneme", "chance_grapheme", "chance_phoneme"} <= set(result.groupings)
    assert result.meta.progress.utterances == 8
    html = out.index.read_text()
    assert "silhouette" in html.lower() and html.count("<figure") >= 3
    assert result.folds == 4 and (out.index.parent / "cluster_scores.json").is_file()
    assert set(out.timings) == {"corpus", "collect", "report", "total"}
    # second run reuses the corpus (no re-synthesis) and gives the same accumulators
    again = run_demo(
        tmp_path / "report2",
        config=config,
        corpus_dir=tmp_path / "corpus",
        model=model,
        progress=False,
    )
    r2 = Result.load(again.result_file)
    key = next(k for k in result.arrays if k.endswith("act_sum"))
    assert torch.equal(torch.from_numpy(result.arrays[key]), torch.from_numpy(r2.arrays[key]))


def test_chance_groupings_follow_corpus_frequencies():
    from gradnap.corpus.timings import PhoneSpan

    class U:
        def __init__(self, uid, text, phones):
            self.id, self.text, self.phones = uid, text, phones

    corpus = [U("a", "aab", (PhoneSpan("AA", 0, 0.3), PhoneSpan("T", 0.3, 0.4)))]
    g, p = chance_groupings(corpus, seed=3)
    assert g.__name__ == "chance_grapheme" and p.__name__ == "chance_phoneme"
    assert set(g.choices) == {"a", "b"} and set(p.choices) == {"AA", "T"}
    labels = [p(corpus[0], f) for f in range(4000)]
    share = labels.count("AA") / len(labels)
    assert 0.70 < share < 0.80  # AA lasts 3/4 of the time
    assert labels == [p(corpus[0], f) for f in range(4000)]  # seeded


def test_demo_command_passes_its_options(monkeypatch, tmp_path):
    import gradnap.report.demo as demo
    from gradnap.cli import main

    seen = {}

    def fake_run_demo(out, *, config, corpus_dir, jobs):
        seen.update(out=out, config=config, corpus_dir=corpus_dir, jobs=jobs)
        return demo.DemoResult(tmp_path / "index.html", tmp_path / "result.npz")

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path), "--folds", "1", "--utterances", "7"]) == 0
    assert seen["config"] == replace(DEMO, folds=1, utterances=7)
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert seen["config"] == DEMO and DEMO.folds == METHOD.folds == 5
    # a Hugging Face checkpoint directory: the smaller default corpus
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("{}")
    assert main(["demo", "--out", str(tmp_path), "--model", str(hf_dir)]) == 0
    assert seen["config"] == replace(DEMO, model=str(hf_dir), utterances=DEMO.attention_utterances)
    assert DEMO.attention_utterances < DEMO.utterances
    # a conv + attention checkpoint too, not a Wav2Letter one
    from gradnap.asr.model import build_model
    from gradnap.asr.modelfile import save_model

    for config, utterances in (("transformer", DEMO.attention_utterances), ("default", None)):
        path = save_model(tmp_path / f"{config}.pt", build_model(config))
        assert main(["demo", "--out", str(tmp_path), "--model", str(path)]) == 0
        want = utterances if utterances is not None else DEMO.utterances
        assert seen["config"] == replace(DEMO, model=str(path), utterances=want)


@pytest.mark.slow
def test_demo_on_a_hugging_face_model(tmp_path):
    pytest.importorskip("transformers", reason="transformers is not installed (the 'hf' extra)")
    from gradnap.asr.train_hf import build_transformer, save_transformer
    from test_train_hf import TINY

    # 20 ms frames, as the shipped model: one backward pass per frame
    arch = replace(TINY, conv_kernel=(32, 20), conv_stride=(16, 20))
    model_dir = save_transformer(tmp_path / "model", build_transformer(arch, seed=0).eval())
    config = replace(DEMO, utterances=4, seed=5, min_count=1, folds=4, model=str(model_dir))
    out = run_demo(
        tmp_path / "report", config=config, corpus_dir=tmp_path / "corpus", progress=False
    )
    result = Result.load(out.result_file)
    assert {"grapheme", "phoneme"} <= set(result.groupings)
    assert result.meta.progress.utterances == 4
    assert "lm_head" in result.layers and any("encoder.layers" in n for n in result.layers)
    html = out.index.read_text()
    assert "silhouette" in html.lower() and html.count("<figure") >= 3
    assert "given model" in html
    assert "Input spectrum (waveform model)" in html  # the waveform input in Hz and ms
