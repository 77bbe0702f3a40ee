import pytest

from gradnap import GradnapError, alphabet
from gradnap.defaults import ALPHABET, BLANK_INDEX


def test_text_normalisation_counts_removed():
    assert alphabet.normalize_text("  Hello,\tWorld!  It’s ") == ("hello world it's", 2)
    assert alphabet.normalize_text("") == ("", 0)
    assert alphabet.normalize_text("42") == ("", 2)


def test_encode_decode():
    ids = alphabet.encode_text("ab c'")
    assert ids == [0, 1, 26, 2, 27]
    assert alphabet.decode_indices(ids + [BLANK_INDEX]) == "ab c'"
    assert len(ALPHABET) + 1 == 29
    with pytest.raises(GradnapError):
        alphabet.encode_text("A")
    assert alphabet.class_label(26) == "_" and alphabet.class_label(BLANK_INDEX) == "<b>"


def test_decode_indices_writes_extra_classes_as_errors():
    from gradnap.alphabet import EXTRA_CLASS_CHAR, decode_indices
    from gradnap.defaults import BLANK_INDEX

    assert decode_indices([0, BLANK_INDEX, 26, BLANK_INDEX + 1, 1]) == f"a {EXTRA_CLASS_CHAR}b"
