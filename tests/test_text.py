import random

import pytest

from gradnap.corpus import text
from gradnap.defaults import SYNTH, SynthConfig


@pytest.fixture(scope="module")
def pron():
    return text.cmu_dictionary()


@pytest.fixture(scope="module")
def letters(pron):
    return {c: {text._strip(p) for p in pron.get(c, [])} for c in "abcdefghijklmnopqrstuvwxyz"}


@pytest.mark.parametrize(
    "word,reason",
    [
        ("the", None),
        ("a", None),
        ("i", None),
        ("don't", None),
        ("us", None),  # first pronunciation AH S, not the letters U S
        ("x", "single letter"),
        ("3rd", "not a plain word"),
        ("e.g", "not a plain word"),
        ("mr", "no vowel letter"),
        ("tv", "no vowel letter"),
        ("vi", "Roman numeral"),
        ("xi", "Roman numeral"),
        ("uk", "initialism"),
        ("fbi", "initialism"),
        ("ok", "initialism"),
        ("etc", "excluded"),
        ("dont", "not in CMUdict"),
    ],
)
def test_junk_reason(word, reason, pron, letters):
    assert text.junk_reason(word, pron.get(word), letters) == reason


def test_spelled_out():
    letters = {"t": {("T", "IY")}, "v": {("V", "IY")}, "a": {("AH",), ("EY",)}}
    assert text._spelled_out("tv", ("T", "IY", "V", "IY"), letters)
    assert not text._spelled_out("tv", ("T", "EH", "L", "IY"), letters)
    assert text._spelled_out("ta", ("T", "IY", "EY"), letters)
    assert not text._spelled_out("ta", ("T", "IY", "EY", "Z"), letters)


def test_vocabulary_is_clean(pron, letters):
    vocab = text.vocabulary()
    assert 3000 < len(vocab) <= SYNTH.vocabulary_size
    assert len(set(vocab.words)) == len(vocab)
    for w in vocab.words:
        assert text.junk_reason(w, pron.get(w), letters) is None, w
    assert vocab.words[0] == "the"  # most frequent, highest weight
    weights = [b - a for a, b in zip((0.0,) + vocab.cum_weights, vocab.cum_weights, strict=False)]
    assert weights[0] == max(weights)


def test_sentences_are_seeded_and_independent():
    s = text.sentences(20, seed=3)
    assert s == text.sentences(20, seed=3)
    assert s != text.sentences(20, seed=4)
    assert text.sentence(3, 7) == s[7]  # sentence i depends on (seed, i) only
    assert len(set(s)) == len(s)


def test_sentence_lengths_and_words():
    vocab = set(text.vocabulary().words)
    lengths = set()
    for i in range(300):
        words = text.sentence(0, i).split(" ")
        assert SYNTH.min_words <= len(words) <= SYNTH.max_words
        assert set(words) <= vocab
        lengths.add(len(words))
    assert lengths == set(range(SYNTH.min_words, SYNTH.max_words + 1))


def test_config_changes_lengths():
    cfg = SynthConfig(min_words=2, max_words=2)
    assert all(len(text.sentence(1, i, cfg).split()) == 2 for i in range(20))


def test_vocabulary_sampling_follows_weights():
    vocab = text.Vocabulary(["x", "y"], [1.0, 3.0])
    rng = random.Random(0)
    draws = vocab.sample(rng, 4000)
    assert 0.7 < draws.count("y") / len(draws) < 0.8
