"""The progress helper: a bar on a terminal, a few log lines elsewhere."""

import io
import logging

from gradnap.progress import ProgressBar, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gradnap.progress"]


def test_log_file_gets_a_line_per_tenth_not_per_update(caplog):
    caplog.set_level(logging.INFO, logger="gradnap.progress")
    stream = io.StringIO()  # stderr redirected to a file: not a terminal
    with progress_bar(400, "collect", stream=stream, every_seconds=1e9) as bar:
        assert bar.mode == "lines"
        for _ in range(400):
            bar.update(1, frames=37)
    out = lines(caplog)
    assert stream.getvalue() == ""  # no \r updates
    assert out[0] == "collect: 0/400 utt"
    assert len(out) == 1 + 9 + 1  # start, every 10% up to 90%, the end
    assert out[1].startswith("collect: 40/400 utt (10%), ")
    assert "utt/s" in out[1] and "frames/s" in out[1] and "ETA" in out[1]
    assert out[-2].startswith("collect: 360/400 utt (90%), ")
    assert out[-1].startswith("collect: 400/400 utt (100%) in ") and "ETA" not in out[-1]


def test_log_lines_also_come_by_time(caplog):
    caplog.set_level(logging.INFO, logger="gradnap.progress")
    bar = progress_bar(None, "eval", stream=io.StringIO(), every_seconds=0.0)
    for _ in range(3):
        bar.update(2)
    bar.note("skipped 1")
    bar.close()
    bar.close()  # closing twice logs once
    out = lines(caplog)
    assert out[0] == "eval: 0 utt" and out[1].startswith("eval: 2 utt, ")
    assert len(out) == 5 and "%" not in out[-1] and out[-1].endswith("skipped 1")


def test_resumed_run_counts_rates_and_eta_from_its_own_items(caplog):
    caplog.set_level(logging.INFO, logger="gradnap.progress")
    bar = progress_bar(10, "collect", initial=5, stream=io.StringIO(), every_seconds=1e9)
    bar.update(1)
    assert bar.text().startswith("collect: 6/10 utt (60%), ")
    assert bar.text().count("ETA") == 1
    bar.close()


def test_terminal_gets_a_bar_with_total_percentage_rate_and_eta():
    stream = Terminal()
    with progress_bar(50, "collect", stream=stream) as bar:
        assert bar.mode == "bar"
        for _ in range(50):
            bar.update(1, frames=10)
    text = stream.getvalue()
    assert "50/50" in text and "100%" in text and "utt/s" in text and "frames/s" in text


def test_disabled_shows_nothing(caplog):
    caplog.set_level(logging.INFO, logger="gradnap.progress")
    stream = Terminal()
    bar = progress_bar(5, "x", enabled=False, stream=stream)
    bar.update(5, frames=3)
    bar.close()
    assert isinstance(bar, ProgressBar) and bar.mode == "off"
    assert stream.getvalue() == "" and lines(caplog) == []


def test_without_logging_set_up_the_lines_go_to_the_stream(monkeypatch):
    logger = logging.getLogger("gradnap.progress.orphan")
    monkeypatch.setattr(logger, "propagate", False)
    stream = io.StringIO()
    with progress_bar(2, "features", stream=stream, logger=logger, every_seconds=1e9) as bar:
        bar.update(2)
    assert stream.getvalue().splitlines()[0] == "features: 0/2 utt"
    assert stream.getvalue().splitlines()[-1].startswith("features: 2/2 utt (100%) in ")
