"""The grapheme alphabet: text normalisation, encoding, decoding and class labels."""

from __future__ import annotations

import re

from gradnap.defaults import ALPHABET, BLANK_INDEX, BLANK_SYMBOL
from gradnap.errors import GradnapError

__all__ = ["normalize_text", "encode_text", "decode_indices", "class_label", "EXTRA_CLASS_CHAR"]


_CHAR_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_SPACES = re.compile(r"\s+")
# Typographic apostrophes count as the apostrophe.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


def normalize_text(text: str) -> tuple[str, int]:
    """Lower-case ``text``, collapse whitespace and remove characters outside the alphabet.

    Returns ``(normalised, removed)`` where ``removed`` counts the dropped characters
    (whitespace other than single spaces is not counted).
    """
    lowered = _SPACES.sub(" ", text.translate(_APOSTROPHES).lower()).strip()
    kept = [c for c in lowered if c in _CHAR_INDEX]
    removed = len(lowered) - len(kept)
    return _SPACES.sub(" ", "".join(kept)).strip(), removed


def encode_text(text: str) -> list[int]:
    """Class indices of an already normalised text; raises on characters outside the alphabet."""
    try:
        return [_CHAR_INDEX[c] for c in text]
    except KeyError as exc:
        raise GradnapError(
            f"character {exc.args[0]!r} is not in the alphabet; normalise first"
        ) from None


#: How :func:`decode_indices` writes a class beyond gradnap's alphabet (an extra token
#: of a Hugging Face checkpoint, e.g. ``<unk>``): a character no transcript holds, so it
#: counts as an error.
EXTRA_CLASS_CHAR = "?"


def decode_indices(indices) -> str:
    """Text of a sequence of class indices; blanks are skipped (no CTC collapsing here),
    classes beyond the alphabet and blank are written :data:`EXTRA_CLASS_CHAR`."""
    return "".join(
        ALPHABET[i] if i < BLANK_INDEX else EXTRA_CLASS_CHAR for i in indices if i != BLANK_INDEX
    )


def class_label(index: int) -> str:
    """Printable label of class ``index`` (space shown as ``_``, blank as ``<b>``)."""
    if index == BLANK_INDEX:
        return BLANK_SYMBOL
    ch = ALPHABET[index]
    return "_" if ch == " " else ch
