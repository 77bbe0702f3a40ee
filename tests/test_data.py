import numpy as np
import pytest
import soundfile as sf
import torch

from gradnap.asr.data import (
    Example,
    collate,
    feature_cache_path,
    load_features,
    make_batches,
    split_corpus,
)
from gradnap.asr.model import CONFIGS
from gradnap.corpus.librispeech import Utterance, read_corpus
from gradnap.errors import GradnapError
from helpers import write_corpus


def two_speakers(root):
    """Speakers s1, s2, chapter 1: three utterances each of 0.2, 0.3, 0.4 s, "sentence
    number a", "b", "c"."""
    texts = [f"SENTENCE NUMBER {c}" for c in "ABC"]
    return write_corpus(
        root, 3, [0.2, 0.3, 0.4], broken=False,
        speakers=("s1", "s2"), chapter="1", texts=texts, phones=False,
    )  # fmt: skip


def test_load_features_uses_cache(tmp_path, monkeypatch):
    root = two_speakers(tmp_path / "c")
    corpus = read_corpus(root)
    ex = load_features(corpus, cache_dir=tmp_path / "cache", progress=False)
    assert len(ex) == 6
    assert ex[0].features.shape == (128, 1 + 3200 // 128) and ex[0].features.dtype == torch.float16
    assert ex[0].utterance.text == "sentence number a"
    assert feature_cache_path(root, cache_dir=tmp_path / "cache").is_file()

    calls = []
    real = type(corpus).iter_features

    def counting(self, config, utterances=None):
        calls.append(len(utterances))
        yield from real(self, config, utterances)

    monkeypatch.setattr(type(corpus), "iter_features", counting)
    again = load_features(read_corpus(root), cache_dir=tmp_path / "cache", progress=False)
    assert calls == []  # everything from the cache
    assert all(torch.equal(a.features, b.features) for a, b in zip(ex, again, strict=True))
    # a changed file is recomputed, the rest come from the cache
    path = ex[1].utterance.audio_path
    sf.write(path, np.zeros(4000, dtype=np.float32) + 0.1, 16000)
    third = load_features(read_corpus(root), cache_dir=tmp_path / "cache", progress=False)
    assert calls == [1]
    assert third[1].features.shape[1] == 1 + 4000 // 128


def test_unreadable_audio_is_skipped_and_counted(tmp_path):
    root = two_speakers(tmp_path / "c")
    (root / "s1" / "1" / "s1-1-0001.wav").write_bytes(b"not audio at all")
    corpus = read_corpus(root)
    ex = load_features(corpus, cache_dir=tmp_path / "cache", progress=False)
    assert len(ex) == 5
    assert any("s1-1-0001.wav" in p for p in corpus.problems)


def _utt(i, text, speaker):
    return Utterance(f"{speaker}-{i}", None, text, speaker, "1")


def test_split_by_sentence_and_voice():
    texts = [f"sentence {i}" for i in range(400)]
    utts = [_utt(i, t, spk) for spk in ("a", "b", "c") for i, t in enumerate(texts)]
    split = split_corpus(utts, holdout_voices=("c",), heldout_fraction=0.1)
    assert len(split.holdout_voice) == 400
    assert all(u.speaker == "c" for u in split.holdout_voice)
    parts = [split.train, split.valid, split.test]
    assert sum(map(len, parts)) == 800
    # a sentence is in exactly one part, for every voice
    text_sets = [{u.text for u in p} for p in parts]
    assert not (
        text_sets[0] & text_sets[1] or text_sets[0] & text_sets[2] or text_sets[1] & text_sets[2]
    )
    for p in parts[1:]:
        assert {u.speaker for u in p} == {"a", "b"}
        assert 0.02 < len(p) / 800 < 0.09  # about 5% each
    # the same texts give the same split whatever the order
    again = split_corpus(list(reversed(utts)), ("c",), 0.1)
    assert {u.id for u in again.valid} == {u.id for u in split.valid}


def test_split_errors():
    utts = [_utt(0, "x", "a")]
    with pytest.raises(GradnapError, match="--holdout-voice.*'zz'"):
        split_corpus(utts, ("zz",), speakers=["a"])
    with pytest.raises(GradnapError, match="heldout"):
        split_corpus(utts, heldout_fraction=1.5)


def test_make_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 500, size=203).tolist()
    b1 = make_batches(lengths, max_frames=2000, max_batch=8, seed=1)
    flat = sorted(i for b in b1 for i in b)
    assert flat == list(range(203))
    for b in b1:
        assert len(b) <= 8
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 2000
    assert make_batches(lengths, 2000, 8, seed=1) == b1
    assert make_batches(lengths, 2000, 8, seed=2) != b1
    # without a seed: sorted by length, deterministic
    b0 = make_batches(lengths, 2000, 8)
    order = [i for b in b0 for i in b]
    assert [lengths[i] for i in order] == sorted(lengths)
    # one over-long utterance still gets its own batch
    assert make_batches([5000, 10], 1000) == [[1], [0]]
    assert make_batches([], 1000) == []


def test_collate_pads_and_counts():
    g = CONFIGS["default"].geometry
    exs = [
        Example(_utt(0, "ab", "a"), torch.ones(128, 10, dtype=torch.float16), torch.tensor([0, 1])),
        Example(_utt(1, "c", "a"), torch.full((128, 7), 2.0), torch.tensor([2])),
    ]
    b = collate(exs, g)
    assert b.features.shape == (2, 128, 10) and b.features.dtype == torch.float32
    assert torch.all(b.features[1, :, 7:] == 0) and torch.all(b.features[1, :, :7] == 2)
    assert b.input_lengths.tolist() == [10, 7]
    assert b.output_lengths.tolist() == [g.output_length(10), g.output_length(7)]
    assert b.targets.tolist() == [0, 1, 2] and b.target_lengths.tolist() == [2, 1]
