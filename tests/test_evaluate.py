import pytest
import torch

from gradnap.asr.data import Example
from gradnap.asr.decode import BeamDecoder, greedy_decode
from gradnap.asr.evaluate import ErrorCount, edit_distance, evaluate_model, transcribe
from gradnap.asr.model import build_model
from gradnap.corpus.librispeech import Utterance
from helpers import TINY, write_corpus


def test_edit_distance_known_answers():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("abc", "") == 3
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("the cat sat".split(), "the bat sat on".split()) == 2


def test_error_count_rates():
    c = ErrorCount()
    c.add("the cat", "the bat")  # 1 char of 7, 1 word of 2
    c.add("a dog", "a dog")  # 0 of 5, 0 of 2
    assert (c.char_errors, c.chars, c.word_errors, c.words) == (1, 12, 1, 4)
    assert c.cer == pytest.approx(1 / 12) and c.wer == pytest.approx(1 / 4)
    d = ErrorCount()
    d.add("xy", "")
    c.merge(d)
    assert c.cer == pytest.approx(3 / 14) and c.utterances == 3
    assert ErrorCount().cer != ErrorCount().cer  # nan without references


def _examples(n=7):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        t = 40 + 13 * i
        utt = Utterance(f"u{i}", None, "ab a", f"spk{i % 2}", "1")
        out.append(Example(utt, torch.randn(128, t, generator=g), torch.tensor([0, 1, 26, 0])))
    return out


def test_batched_evaluation_equals_one_by_one():
    model = build_model(TINY, seed=0)
    with torch.no_grad():
        model.layer11.conv.bias[:3] += 2.0  # make non-blank outputs likely
    exs = _examples()
    res = evaluate_model(model, exs, beam=BeamDecoder(beam_size=8), max_frames=400)
    by_id = {i: hyp for i, _, hyp in res.samples}
    expected = ErrorCount()
    for ex in exs:
        with torch.no_grad():
            logits = model(ex.features.float()[None])[0]  # one utterance, no padding
        hyp = greedy_decode(logits)
        assert by_id[ex.id] == hyp == transcribe(model, ex.features)
        expected.add(ex.utterance.text, hyp)
    assert (res.greedy.char_errors, res.greedy.chars) == (expected.char_errors, expected.chars)
    assert res.greedy.utterances == len(exs)
    assert any(hyp for _, _, hyp in res.samples)  # the test decodes real text
    # per-speaker counts add up to the total
    assert sum(c.char_errors for c in res.per_speaker_greedy.values()) == res.greedy.char_errors
    assert set(res.per_speaker_beam) == {"spk0", "spk1"}
    assert res.loss > 0


def test_cli_train_then_eval(tmp_path, monkeypatch, capsys):
    import json

    from gradnap.asr import model as model_mod
    from gradnap.cli import main

    monkeypatch.setitem(model_mod.MODEL_CONFIGS, "tiny", TINY)
    texts = ["A CAT", "THE DOG", "WE GO", "I SEE"]
    corpus = write_corpus(
        tmp_path / "corpus", 4, [0.3, 0.4, 0.5, 0.6], broken=False,
        speakers=("s1", "s2"), chapter="1", texts=texts, phones=False,
    )  # fmt: skip
    out = tmp_path / "m.pt"
    common = ["--threads", "1", "--feature-cache", str(tmp_path / "cache"), "--no-progress"]
    status = main(
        ["train", "--corpus", str(corpus), "--config", "tiny", "--out", str(out), "--epochs", "2",
         "--max-frames", "400", "--holdout-voice", "s2", "--run-dir", str(tmp_path / "run"),
         "--float16", *common]
    )  # fmt: skip
    assert status == 0 and out.is_file()
    assert "valid_CER" in capsys.readouterr().out
    from gradnap.asr.modelfile import read_model_file

    blob = read_model_file(out)
    assert blob["dtype"] == "float16" and blob["metadata"]["holdout_voices"] == ["s2"]
    assert len(blob["metadata"]["history"]) == 2
    status = main(
        ["eval", "--model", str(out), "--corpus", str(corpus), "--split", "holdout-voice",
         "--beam-size", "4", "--json", str(tmp_path / "e.json"), "--show", "1", *common]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0
    assert "greedy" in printed and "beam 4" in printed and "s2" in printed
    figures = json.loads((tmp_path / "e.json").read_text())
    assert figures["utterances"] == 4 and set(figures["per_speaker"]) == {"s2"}
    assert 0 <= figures["greedy"]["cer"]
    # beam search with a character LM from the training split's transcripts
    status = main(
        ["eval", "--model", str(out), "--corpus", str(corpus), "--beam-size", "4",
         "--char-lm", "3", *common]
    )  # fmt: skip
    assert status == 0 and "3-gram LM" in capsys.readouterr().out
    # a bad model file is a one-line error with status 2
    (tmp_path / "bad.pt").write_text("x")
    assert main(["eval", "--model", str(tmp_path / "bad.pt"), "--corpus", str(corpus)]) == 2
    assert "bad.pt" in capsys.readouterr().err


def test_cli_eval_checks_its_json_output_first(tmp_path, capsys):
    from gradnap.cli import main

    # neither the model nor the corpus exists: the output is checked before either is read
    args = ["eval", "--model", str(tmp_path / "m.pt"), "--corpus", str(tmp_path / "c")]
    assert main([*args, "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path}: is a directory" in capsys.readouterr().err
