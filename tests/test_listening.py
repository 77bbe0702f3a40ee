import pytest

from gradnap.analysis.listening import ListeningSummary, listening_summary
from gradnap.errors import GradnapError


def test_quartiles_of_a_histogram():
    s = listening_summary({-8: 1, 0: 1, 8: 2, 16: 4, 24: 2})  # 10 examples
    assert s == ListeningSummary(median=16.0, q25=8.0, q75=16.0, examples=10)
    assert s.describe() == "median +16 ms (IQR +8 to +16 ms, 10 examples)"
    assert listening_summary({68: 3}).median == 68.0


def test_no_offsets_is_an_error_that_says_why():
    with pytest.raises(GradnapError, match="without the input layer"):
        listening_summary({})
