"""Synthesizer phone symbols -> the 39 ARPAbet phonemes without stress plus ``SIL``.

Two tables, one per synthesizer, and one function that turns a synthesizer's phone
sequence with times into contiguous :class:`~gradnap.corpus.timings.PhoneSpan` lists.

Every symbol maps to a tuple of phones:

* one phone: the usual case (``ax`` -> ``AH``, ``dZ`` -> ``JH``);
* several phones: a symbol that stands for a sequence (eSpeak ``A@`` in a rhotic accent
  -> ``AA R``, ``@L`` -> ``AH L``). Its time span is **split into equal parts**, one per
  phone (the synthesizers give no finer timing);
* no phone (``()``): a marker without sound of its own (eSpeak's syllable break ``;``).
  Its span, if it has one, is **merged into the previous phone** (into the next one
  when it comes first).

Pause symbols (flite ``pau``, eSpeak ``_``, ``_:``...) map to ``SIL``; neighbouring
``SIL`` spans are merged. A symbol missing from the table is handled like ``()`` and
counted, so a new synthesizer version cannot silently invent phones; the tests list
every symbol that occurs with the shipped voices.

eSpeak's phonemes are mapped by how the accent *realizes* them (its IPA), not by the
lexical set: in the non-rhotic accents ``A@`` ("are") is a plain ``AA``, in the
rhotic en-us it is ``AA R``. :data:`ESPEAK_ACCENT_OVERRIDES` holds the per-accent
differences from :data:`ESPEAK_TO_ARPABET` (which describes American English).
See ``docs/corpus.md``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gradnap.corpus.timings import PhoneSpan
from gradnap.defaults import FEATURES, PHONE_SET, SILENCE

__all__ = [
    "FLITE_TO_ARPABET",
    "ESPEAK_TO_ARPABET",
    "ESPEAK_ACCENT_OVERRIDES",
    "ESPEAK_STRESS_MARKS",
    "Synthesized",
    "espeak_table",
    "strip_stress",
    "build_spans",
    "limit_peak",
]

#: flite's US English phone set (``cmu_us`` voices and ``kal16``, lexicon ``cmulex``).
FLITE_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # silence, breath
    "pau": ("SIL",), "h#": ("SIL",), "brth": ("SIL",),
    # vowels
    "aa": ("AA",), "ae": ("AE",), "ah": ("AH",), "ao": ("AO",), "aw": ("AW",),
    "ax": ("AH",), "axr": ("ER",), "ay": ("AY",), "eh": ("EH",), "er": ("ER",),
    "ey": ("EY",), "ih": ("IH",), "ix": ("IH",), "iy": ("IY",), "ow": ("OW",),
    "oy": ("OY",), "uh": ("UH",), "uw": ("UW",),
    # syllabic consonants
    "el": ("AH", "L"), "em": ("AH", "M"), "en": ("AH", "N"),
    # consonants
    "b": ("B",), "ch": ("CH",), "d": ("D",), "dh": ("DH",), "dx": ("T",), "f": ("F",),
    "g": ("G",), "hh": ("HH",), "hv": ("HH",), "jh": ("JH",), "k": ("K",), "l": ("L",),
    "m": ("M",), "n": ("N",), "nx": ("N",), "ng": ("NG",), "p": ("P",), "r": ("R",),
    "s": ("S",), "sh": ("SH",), "t": ("T",), "th": ("TH",), "v": ("V",), "w": ("W",),
    "y": ("Y",), "z": ("Z",), "zh": ("ZH",),
}  # fmt: skip

#: eSpeak NG English phoneme mnemonics (``phsource/ph_english*``) as spoken by en-us.
ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # pauses (word gaps, clause and sentence ends)
    "_": ("SIL",), "_:": ("SIL",), "_!": ("SIL",), "_|": ("SIL",), "_#": ("SIL",),
    "_^_": ("SIL",),
    # markers without a sound of their own: merged into the previous phone
    ";": (), "||": (), "|": (),
    # vowels
    "0": ("AA",),  # LOT  [ɑː]
    "3": ("ER",),  # lettER  [ɚ]
    "3:": ("ER",),  # NURSE  [ɜː]
    "@": ("AH",), "@-": ("AH",), "@2": ("AH",), "@5": ("AH",),  # schwa variants
    "@L": ("AH", "L"),  # syllabic l, spoken [əl]
    "A:": ("AA",),  # PALM
    "A@": ("AA", "R"),  # START  [ɑːɹ]
    "E": ("EH",),
    "I": ("IH",), "I#": ("IH",), "I2": ("IH",),  # KIT and its weak variants
    "IR": ("ER",),  # Scottish "first"  [əɹ]
    "O": ("AO",), "O2": ("AO",), "O:": ("AO",),  # THOUGHT
    "O@": ("AO", "R"), "o@": ("AO", "R"),  # NORTH, FORCE  [ɔːɹ]
    "OI": ("OY",),
    "U": ("UH",),
    "U@": ("UH", "R"),  # CURE  [ʊɹ]
    "V": ("AH",),  # STRUT
    "VR": ("ER",),  # Scottish "work"  [ʌɹ]
    "a": ("AE",), "aa": ("AE",),  # TRAP, BATH
    "a#": ("AH",),  # reduced a, "about"  [ɐ]
    "aI": ("AY",), "aI2": ("AY",),
    "aI3": ("AY", "ER"),  # "fire"  [aɪɚ]
    "aI@": ("AY", "AH"),  # "society"  [aɪə]
    "aU": ("AW",),
    "aU@": ("AW", "AH"),
    "e@": ("EH", "R"),  # SQUARE  [ɛɹ]
    "eI": ("EY",),
    "i": ("IY",), "i:": ("IY",),  # happY, FLEECE
    "i@": ("IY", "AH"),  # "really"  [iə]
    "i@3": ("IH", "R"),  # NEAR  [ɪɹ]
    "oU": ("OW",),
    "u:": ("UW",),
    # consonants
    "b": ("B",), "d": ("D",), "d#": ("D",), "D": ("DH",), "dZ": ("JH",), "f": ("F",),
    "g": ("G",), "h": ("HH",), "j": ("Y",), "k": ("K",), "l": ("L",), "l/": ("L",),
    "m": ("M",), "n": ("N",), "n-": ("N",), "N": ("NG",), "p": ("P",), "r": ("R",),
    "r-": ("R",), "s": ("S",), "S": ("SH",), "t": ("T",), "t#": ("T",), "t2": ("T",),
    "t[": ("T",), "T": ("TH",), "tS": ("CH",), "v": ("V",), "w": ("W",), "w#": ("W",),
    "x": ("HH",), "z": ("Z",), "Z": ("ZH",),
    "?": ("T",),  # glottal stop standing for t ("certain")
}  # fmt: skip

_NON_RHOTIC: dict[str, tuple[str, ...]] = {
    "3": ("AH",),  # [ə]
    "A@": ("AA",),  # [ɑː]
    "O@": ("AO",),
    "o@": ("AO",),
    "e@": ("EH", "AH"),  # [eə]
    "i@3": ("IY", "AH"),  # [iə]
    "U@": ("UH", "AH"),  # [ʊə]
}

#: Where an accent realizes a phoneme differently from en-us (from eSpeak's IPA output).
ESPEAK_ACCENT_OVERRIDES: dict[str, dict[str, tuple[str, ...]]] = {
    "en-us": {},
    "en": dict(_NON_RHOTIC),
    "en-gb-x-rp": {**_NON_RHOTIC, "U@": ("AO",), "aa": ("AA",), "i": ("IH",)},
    "en-029": dict(_NON_RHOTIC),
    "en-us-nyc": dict(_NON_RHOTIC),
    "en-gb-x-gbclan": {**_NON_RHOTIC, "V": ("UH",)},
    "en-gb-x-gbcwmd": {**_NON_RHOTIC, "V": ("UH",), "e@": ("ER",), "aI": ("OY",)},
    # rhotic, with the r as a phoneme of its own after the vowel
    "en-gb-scotland": {
        "3": ("AH",),  # [ɜ]
        "3:": ("EH",),  # [e] "were"
        "A@": ("AA",),  # [aː]
        "O@": ("AO",),  # [ɔ]
        "o@": ("OW",),  # [o]
        "e@": ("EH",),  # [e]
        "i@3": ("IH",),  # [ɪ]
        "U": ("UW",),  # [ʉ]
        "U@": ("UW", "R"),  # [ʉɹ]
    },
}

#: Stress and syllable marks eSpeak prefixes to phoneme mnemonics.
ESPEAK_STRESS_MARKS = "',%="


def strip_stress(symbol: str) -> str:
    """An eSpeak mnemonic without its stress prefix (``'oU`` -> ``oU``)."""
    return symbol.lstrip(ESPEAK_STRESS_MARKS)


def espeak_table(voice: str) -> dict[str, tuple[str, ...]]:
    """The mnemonic -> ARPAbet table of an eSpeak voice (``en-gb-x-rp+f3``: accent
    ``en-gb-x-rp``); accents without overrides use the en-us table."""
    accent = voice.split("+", 1)[0].lower()
    return {**ESPEAK_TO_ARPABET, **ESPEAK_ACCENT_OVERRIDES.get(accent, {})}


@dataclass
class Synthesized:
    """One synthesized utterance: 16 kHz audio and its phone spans."""

    samples: np.ndarray  # (N,) float32 in [-1, 1] at FEATURES.sample_rate (16 kHz)
    spans: list[PhoneSpan]
    #: Synthesizer symbols missing from the table (merged into a neighbour), with counts.
    unmapped: Counter[str] = field(default_factory=Counter)

    @property
    def duration(self) -> float:
        return len(self.samples) / FEATURES.sample_rate


def limit_peak(samples: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """``samples (N,)`` scaled down to ``peak`` when they exceed it (no clipping in the
    16-bit file; resampling can overshoot), as float32."""
    x = np.asarray(samples, dtype=np.float32)
    top = float(np.abs(x).max()) if x.size else 0.0
    if top > peak:
        x = x * np.float32(peak / top)
    return x.astype(np.float32)


def build_spans(
    phones: Sequence[tuple[str, float]],
    duration: float,
    table: Mapping[str, Sequence[str]],
    resolution: float = 0.001,
) -> tuple[list[PhoneSpan], Counter[str]]:
    """Contiguous phone spans from ``(symbol, start time)`` pairs.

    ``phones`` are a synthesizer's symbols in order with their start times in seconds;
    each lasts until the next one starts, the last until ``duration``. Times are
    clamped to ``[0, duration]`` and rounded to ``resolution`` (the timings file holds
    milliseconds). Audio before the first symbol is ``SIL``. Symbols map through
    ``table`` (see the module docstring); spans that round to zero length are merged
    into the previous span. Returns ``(spans, unmapped symbol counts)``; the spans
    start at 0, end at ``duration`` (rounded) and pass
    :func:`~gradnap.corpus.timings.check_spans`.
    """
    unmapped: Counter[str] = Counter()
    end_all = round(round(duration / resolution) * resolution, 6)
    if end_all <= 0:
        raise ValueError(f"audio of duration {duration} s is too short")

    def q(t: float) -> float:
        t = min(max(t, 0.0), duration)
        return round(round(t / resolution) * resolution, 6)

    # 1. symbols -> (phones, start, end) with starts made monotone
    items: list[tuple[tuple[str, ...] | None, float, float]] = []
    starts = [q(t) for _, t in phones]
    for i in range(1, len(starts)):
        starts[i] = max(starts[i], starts[i - 1])
    if not starts or starts[0] > 0:
        items.append(((SILENCE,), 0.0, starts[0] if starts else end_all))
    for i, (sym, _) in enumerate(phones):
        start = starts[i]
        end = starts[i + 1] if i + 1 < len(phones) else end_all
        mapped = table.get(sym)
        if mapped is None:
            unmapped[sym] += 1
        items.append((tuple(mapped) if mapped is not None else None, start, end))

    # 2. split multi-phone symbols in equal parts; None / () merge into a neighbour
    out: list[list] = []  # [phone, start, end]
    pending_start: float | None = None  # a leading merge-into-next span
    for mapped, start, end in items:
        if not mapped:
            if out:
                out[-1][2] = max(out[-1][2], end)
            elif pending_start is None:
                pending_start = start
            continue
        if pending_start is not None:
            start, pending_start = pending_start, None
        n = len(mapped)
        bounds = [start + (end - start) * k / n for k in range(n + 1)]
        bounds = [q(b) for b in bounds]
        for k, ph in enumerate(mapped):
            out.append([ph, bounds[k], bounds[k + 1]])
    if not out:
        return [PhoneSpan(SILENCE, 0.0, end_all)], unmapped
    if pending_start is not None:  # only markers: nothing to merge into
        out[-1][2] = end_all

    # 3. drop zero-length spans (merge into the previous), merge neighbouring SIL
    merged: list[list] = []
    for ph, start, end in out:
        if merged and (end <= start or (ph == SILENCE and merged[-1][0] == SILENCE)):
            merged[-1][2] = max(merged[-1][2], end)
            continue
        if merged:
            start = merged[-1][2]
        merged.append([ph, start, end])
    if merged[0][2] <= merged[0][1] and len(merged) > 1:  # zero-length first span
        merged[1][1] = merged[0][1]
        merged.pop(0)
    merged[0][1] = 0.0
    merged[-1][2] = end_all
    spans = [PhoneSpan(ph, float(s), float(e)) for ph, s, e in merged]
    for s in spans:
        if s.phone not in PHONE_SET:  # a table bug, not a user error
            raise ValueError(f"table maps to {s.phone!r}, which is not in PHONE_SET")
    return spans, unmapped
