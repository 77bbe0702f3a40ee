import pytest

from gradnap import GradnapError
from gradnap.corpus.timings import (
    HEADER,
    PhoneSpan,
    check_spans,
    read_timings,
    timings_path,
    write_timings,
)


def spans(*items):
    """("SIL", 0, 0.1), ... -> PhoneSpans."""
    return [PhoneSpan(p, a, b) for p, a, b in items]


GOOD = spans(("SIL", 0.0, 0.164), ("HH", 0.164, 0.255), ("AY", 0.255, 0.4), ("SIL", 0.4, 0.5))


def test_timings_path_names_chapter(tmp_path):
    assert timings_path(tmp_path / "19" / "198") == tmp_path / "19" / "198" / "19-198.phones.tsv"


def test_write_read_round_trip(tmp_path):
    path = timings_path(tmp_path / "1" / "2")
    other = spans(("SIL", 0.0, 0.05), ("AA", 0.05, 0.2))
    write_timings(path, {"1-2-0001": other, "1-2-0000": GOOD})
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    assert lines[1] == "1-2-0000\t0.000\t0.164\tSIL"  # sorted by utterance, ms resolution
    assert len(lines) == 1 + len(GOOD) + len(other)
    assert read_timings(path) == {"1-2-0000": GOOD, "1-2-0001": other}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_write_rounds_to_milliseconds(tmp_path):
    path = tmp_path / "a" / "b" / "a-b.phones.tsv"
    write_timings(path, {"u": spans(("SIL", 0.0, 0.12349), ("S", 0.12349, 0.5))})
    assert read_timings(path)["u"][0].end == 0.123


def test_check_spans_accepts_contiguous_and_duration():
    check_spans(GOOD, duration=0.5)
    check_spans(GOOD, duration=0.501)  # within the 1.5 ms tolerance of the ms rounding


@pytest.mark.parametrize(
    ("bad", "duration", "message"),
    [
        ([], None, "no phones"),
        (spans(("SIL", 0, 0.1), ("XX", 0.1, 0.2)), None, "unknown phone"),
        (spans(("SIL", 0, 0.1), ("AA", 0.1, 0.1)), None, "<= start"),
        (spans(("SIL", 0, 0.1), ("AA", 0.12, 0.2)), None, "gap or overlap"),
        (spans(("SIL", 0, 0.1), ("AA", 0.08, 0.2)), None, "gap or overlap"),
        (spans(("SIL", 0.01, 0.1), ("AA", 0.1, 0.2)), 0.2, "start at 0.010 s, not at 0"),
        (spans(("SIL", -0.2, 0.1), ("AA", 0.1, 0.2)), None, "start at -0.200 s, not at 0"),
        (spans(("SIL", 0, 0.1), ("AA", 0.1, 0.2)), 0.3, "audio is"),
        (spans(("SIL", 0, 0.1), ("AA", 0.1, 0.2)), 0.1, "audio is"),
    ],
)
def test_check_spans_rejects(bad, duration, message):
    with pytest.raises(ValueError, match=message):
        check_spans(bad, duration=duration)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("u\t0.0\t0.1", "expected"),
        ("u\t0.0\tzero\tAA", "expected"),
        ("u\t0.0\t0.1\taa1", "unknown phone"),
    ],
)
def test_read_timings_names_file_and_line(tmp_path, row, message):
    path = tmp_path / "x.phones.tsv"
    path.write_text(f"{HEADER}\nu\t0.000\t0.100\tSIL\n{row}\n")
    with pytest.raises(GradnapError, match=message) as info:
        read_timings(path)
    assert f"{path}:3" in str(info.value)


def test_read_timings_missing_file(tmp_path):
    with pytest.raises(GradnapError, match="cannot read"):
        read_timings(tmp_path / "missing.phones.tsv")
