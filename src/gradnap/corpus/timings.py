"""Phone timings: one format for synthesized and force-aligned corpora.

Each chapter directory ``<root>/<speaker>/<chapter>/`` may hold
``<speaker>-<chapter>.phones.tsv`` next to its ``<speaker>-<chapter>.trans.txt``::

    utterance	start	end	phone
    1-2-0000	0.000	0.164	SIL
    1-2-0000	0.164	0.255	HH

Times are seconds from the start of the audio file, written with millisecond
resolution; the phones of one utterance are contiguous (each ``start`` equals the
previous ``end``), start at 0 and end at the audio's duration. Phones are the 39
ARPAbet phonemes without stress plus ``SIL`` (:data:`gradnap.defaults.PHONE_SET`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradnap.defaults import PHONE_SET
from gradnap.errors import GradnapError
from gradnap.fileio import atomic_write_text

__all__ = ["PhoneSpan", "read_timings", "write_timings", "timings_path", "check_spans"]

HEADER = "utterance\tstart\tend\tphone"


@dataclass(frozen=True)
class PhoneSpan:
    """One phone from ``start`` to ``end`` seconds."""

    phone: str
    start: float
    end: float


def timings_path(chapter_dir: Path) -> Path:
    """The timings file of a chapter directory ``<root>/<speaker>/<chapter>``."""
    chapter_dir = Path(chapter_dir)
    return chapter_dir / f"{chapter_dir.parent.name}-{chapter_dir.name}.phones.tsv"


def check_spans(spans: list[PhoneSpan], duration: float | None = None, tol: float = 0.0015) -> None:
    """Raise ``ValueError`` unless ``spans`` are known phones, contiguous, monotone, start
    at 0 and (when ``duration`` is given) end at ``duration`` (within ``tol`` s)."""
    if not spans:
        raise ValueError("no phones")
    for a in spans:
        if a.phone not in PHONE_SET:
            raise ValueError(f"unknown phone {a.phone!r}")
        if not a.end > a.start:
            raise ValueError(f"phone {a.phone} has end {a.end} <= start {a.start}")
    if abs(spans[0].start) > tol:
        raise ValueError(f"phones start at {spans[0].start:.3f} s, not at 0")
    for a, b in zip(spans, spans[1:], strict=False):
        if abs(b.start - a.end) > tol:
            raise ValueError(f"gap or overlap between {a} and {b}")
    if duration is not None and abs(spans[-1].end - duration) > tol:
        raise ValueError(
            f"phones cover {spans[0].start:.3f}-{spans[-1].end:.3f} s, audio is {duration:.3f} s"
        )


def write_timings(path: Path, timings: dict[str, list[PhoneSpan]]) -> None:
    """Write ``{utterance id: spans}`` atomically (temporary file, then rename)."""
    path = Path(path)
    lines = [HEADER]
    for utt in sorted(timings):
        for s in timings[utt]:
            lines.append(f"{utt}\t{s.start:.3f}\t{s.end:.3f}\t{s.phone}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_timings(path: Path) -> dict[str, list[PhoneSpan]]:
    """Read a timings file; raises :class:`GradnapError` naming the file and line on bad rows."""
    path = Path(path)
    out: dict[str, list[PhoneSpan]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GradnapError(f"{path}: cannot read phone timings ({exc})") from exc
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or (no == 1 and line.startswith("utterance")):
            continue
        parts = line.split("\t")
        try:
            utt, start, end, phone = parts
            span = PhoneSpan(phone, float(start), float(end))
        except ValueError:
            raise GradnapError(
                f"{path}:{no}: expected 'utterance<TAB>start<TAB>end<TAB>phone'"
            ) from None
        if phone not in PHONE_SET:
            raise GradnapError(f"{path}:{no}: unknown phone {phone!r}")
        out.setdefault(utt, []).append(span)
    return out
