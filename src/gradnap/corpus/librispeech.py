"""Reading LibriSpeech-format corpora.

Layout: ``<root>/<speaker>/<chapter>/<utterance>.flac`` (or ``.wav``) with one
``<speaker>-<chapter>.trans.txt`` per chapter holding ``<utterance> <TEXT>`` lines, and
optionally the phone timings ``<speaker>-<chapter>.phones.tsv`` (:mod:`.timings`).

Nothing here is fatal for a corpus: an utterance with a missing audio file, no
transcript line, an empty transcript, characters that are spoken but outside the
alphabet (digits, ``&``, ``%``, other scripts), a duplicate id, corrupt audio (an
unreadable header when the corpus is read, undecodable data when it is loaded), audio
that is digital silence (found when loaded) or phone timings that end far from the
end of its audio is skipped and recorded in :attr:`Corpus.problems` with a message
naming the file. Problems that leave the utterance in the corpus (malformed phone
timings: the utterance is kept without them) are recorded in :attr:`Corpus.warnings`.

Transcripts are normalised to the alphabet (:func:`prepare_text`): letters are
lower-cased, accents removed (``é`` -> ``e``), hyphens, dashes and slashes become spaces
and silent punctuation (``.,;:!?"()``...) is removed and counted in
:attr:`Corpus.removed_chars`.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gradnap.alphabet import normalize_text
from gradnap.corpus.timings import PhoneSpan, check_spans, read_timings, timings_path
from gradnap.defaults import FEATURES, TIMINGS_END_TOLERANCE, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.features import load_audio, utterance_features

__all__ = [
    "Utterance",
    "Corpus",
    "read_corpus",
    "prepare_text",
    "AUDIO_SUFFIXES",
]

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav")


@dataclass(frozen=True)
class Utterance:
    """One utterance of a corpus; ``text`` is normalised to the alphabet."""

    id: str
    audio_path: Path
    text: str
    speaker: str
    chapter: str
    phones: tuple[PhoneSpan, ...] | None = None


@dataclass
class Corpus:
    """The readable utterances of a corpus and the problems met while reading it."""

    root: Path
    utterances: list[Utterance]
    #: One message per skipped file or utterance, each naming the file.
    problems: list[str] = field(default_factory=list)
    #: Problems that did not skip an utterance (e.g. its phone timings were ignored).
    warnings: list[str] = field(default_factory=list)
    #: Characters removed from transcripts by normalisation.
    removed_chars: int = 0
    _recorded: set[str] = field(default_factory=set, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def skip(self, message: str) -> None:
        """Record a skipped utterance (logged as a warning; recorded once)."""
        if message in self._recorded:
            return
        log.warning("skipped: %s", message)
        self._recorded.add(message)
        self.problems.append(message)

    def warn(self, message: str) -> None:
        """Record a problem of an utterance that is kept (logged as a warning; once)."""
        if message in self._recorded:
            return
        log.warning("%s", message)
        self._recorded.add(message)
        self.warnings.append(message)

    def audio(self, utt: Utterance, config: FeatureConfig = FEATURES) -> np.ndarray:
        """Samples ``(N,)`` of ``utt``; raises :class:`GradnapError` naming the file."""
        return load_audio(utt.audio_path, config)

    def features(self, utt: Utterance, config: FeatureConfig = FEATURES) -> torch.Tensor:
        """Log-mel features ``(F, T)`` of ``utt`` (:func:`gradnap.features.utterance_features`);
        raises :class:`GradnapError` naming the file when it cannot be read or is digital
        silence."""
        return utterance_features(utt.audio_path, config)

    def iter_features(
        self, config: FeatureConfig = FEATURES, utterances: list[Utterance] | None = None
    ) -> Iterator[tuple[Utterance, torch.Tensor]]:
        """Yield ``(utterance, log-mel (F, T))``; unreadable audio is skipped and recorded."""
        for utt in self.utterances if utterances is None else utterances:
            try:
                feats = self.features(utt, config)
            except GradnapError as exc:
                self.skip(str(exc))
                continue
            yield utt, feats

    def with_phones(self) -> list[Utterance]:
        """Utterances that have phone timings."""
        return [u for u in self.utterances if u.phones is not None]

    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})


#: Become a space: hyphens, dashes, slashes, underscores.
_SEPARATORS = "-\u2010\u2011\u2012\u2013\u2014\u2015/\\_"
#: Become an apostrophe.
_APOSTROPHES = "\u2019\u2018\u02bc`\u00b4"
#: Letters without a decomposition into a-z plus accents.
_LETTERS = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th"}
#: Punctuation that is not spoken: removed (other characters outside the alphabet,
#: e.g. digits, & % $ @ + =, are spoken and make the transcript unusable).
_SILENT = set('.,;:!?"()[]{}<>«»“”„‟‹›…¡¿*~|^') | {"\u00a0"}


def prepare_text(raw: str) -> tuple[str, int, list[str]]:
    """Normalise a transcript to the alphabet (a-z, space, apostrophe).

    Returns ``(text, removed, unknown)``: ``removed`` counts the silent punctuation
    dropped, ``unknown`` lists (once each, in order) characters that are probably spoken
    but cannot be written in the alphabet (digits, ``&``, other scripts); when it is
    not empty the text does not match the audio and should not be used.
    """
    out: list[str] = []
    removed = 0
    unknown: list[str] = []
    for ch in raw.lower():
        if "a" <= ch <= "z" or ch == "'":
            out.append(ch)
        elif ch.isspace() or ch in _SEPARATORS:
            out.append(" ")
        elif ch in _APOSTROPHES:
            out.append("'")
        elif ch in _LETTERS:
            out.append(_LETTERS[ch])
        elif ch in _SILENT:
            removed += 1
        else:
            base = unicodedata.normalize("NFKD", ch)
            letters = [c for c in base if not unicodedata.combining(c)]
            if len(letters) == 1 and "a" <= letters[0] <= "z":
                out.append(letters[0])  # é -> e
            elif unicodedata.category(ch).startswith("P") and ch not in "&%#@":
                removed += 1  # other punctuation
            elif ch not in unknown:
                unknown.append(ch)
    text, extra = normalize_text("".join(out))
    return text, removed + extra, unknown


def _check_audio(path: Path) -> tuple[str | None, float | None]:
    """``(problem, duration in seconds)`` from the header of ``path``: a message when it
    cannot be read or holds no samples."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for corrupt data
        return f"{path}: cannot read audio ({exc})", None
    if info.frames == 0:
        return f"{path}: audio file holds no samples", None
    return None, info.frames / info.samplerate


def _find_audio(chapter_dir: Path, utt_id: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = chapter_dir / f"{utt_id}{suffix}"
        if p.is_file():
            return p
    return None


def read_corpus(root: str | Path, check_audio: bool = True, timings: bool = True) -> Corpus:
    """Read the transcripts, audio paths and (where present) phone timings under ``root``.

    ``check_audio``: read each audio file's header now (about 0.1 ms per file) so that
    unreadable files are reported at once and phone timings are checked against the
    audio's duration; undecodable data further into a file and digital silence are
    found when the audio is loaded (:meth:`Corpus.iter_features`). ``timings``: read the
    phone timings (``False``: every ``Utterance.phones`` is ``None``).
    Raises :class:`GradnapError` only when ``root`` is not a directory or holds no
    transcript at all; everything else is skipped and recorded in ``problems`` (or, when
    the utterance is kept, in ``warnings``).
    """
    root = Path(root)
    if not root.is_dir():
        raise GradnapError(f"{root}: corpus directory not found")
    corpus = Corpus(root=root, utterances=[])
    chapter_dirs = sorted(
        {p.parent for s in AUDIO_SUFFIXES for p in root.glob(f"*/*/*{s}")}
        | {p.parent for p in root.glob("*/*/*.trans.txt")}
    )
    if not chapter_dirs:
        deeper = sorted({p.parents[2].name for p in root.glob("*/*/*/*.trans.txt")})
        hint = f"; did you mean {root / deeper[0]}?" if deeper else ""
        raise GradnapError(
            f"{root}: no LibriSpeech-format chapters (<speaker>/<chapter>/*.trans.txt){hint}"
        )
    for chapter_dir in chapter_dirs:
        _read_chapter(corpus, chapter_dir, check_audio, timings)
    if corpus.removed_chars:
        log.info("%s: removed %d punctuation characters", root, corpus.removed_chars)
    if not corpus.utterances and corpus.problems:
        log.warning("%s: no readable utterance (%d problems)", root, len(corpus.problems))
    return corpus


def _read_chapter(
    corpus: Corpus, chapter_dir: Path, check_audio: bool = True, with_timings: bool = True
) -> None:
    speaker, chapter = chapter_dir.parent.name, chapter_dir.name
    trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    audio_ids = {
        p.stem
        for s in AUDIO_SUFFIXES
        for p in chapter_dir.glob(f"*{s}")
        if not p.name.startswith(".")  # editor and macOS metadata files
    }
    if not trans.is_file():
        candidates = sorted(chapter_dir.glob("*.trans.txt"))
        if len(candidates) == 1:
            trans = candidates[0]
        else:
            for utt_id in sorted(audio_ids):
                corpus.skip(f"{chapter_dir / utt_id}: no transcript ({trans.name} missing)")
            return
    timings: dict[str, list[PhoneSpan]] = {}
    tpath = timings_path(chapter_dir)
    if with_timings and tpath.is_file():
        try:
            timings = read_timings(tpath)
        except GradnapError as exc:
            corpus.warn(f"{exc} (phone timings of this chapter ignored)")
    try:
        lines = trans.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        for utt_id in sorted(audio_ids):
            corpus.skip(f"{trans}: cannot read transcript ({exc}); {utt_id} skipped")
        return
    seen: set[str] = set()
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        utt_id, _, raw = line.strip().partition(" ")
        if utt_id in seen:
            corpus.skip(f"{trans}:{no}: utterance {utt_id} listed again (later line ignored)")
            continue
        seen.add(utt_id)
        text, removed, unknown = prepare_text(raw)
        if "\ufffd" in unknown:
            corpus.skip(f"{trans}:{no}: utterance {utt_id}: transcript is not valid UTF-8")
            continue
        if unknown:
            chars = ", ".join(repr(c) for c in unknown)
            corpus.skip(
                f"{trans}:{no}: utterance {utt_id} has characters outside the alphabet "
                f"({chars}); write them out as words"
            )
            continue
        if not text:
            corpus.skip(f"{trans}:{no}: utterance {utt_id} has no usable text ({raw!r})")
            continue
        if removed:
            log.debug("%s:%d: removed %d punctuation characters", trans, no, removed)
            corpus.removed_chars += removed
        audio = _find_audio(chapter_dir, utt_id)
        if audio is None:
            corpus.skip(
                f"{chapter_dir / utt_id}.flac: audio file missing "
                f"(no .flac or .wav for the utterance in {trans.name}:{no})"
            )
            continue
        duration = None
        if check_audio:
            problem, duration = _check_audio(audio)
            if problem is not None:
                corpus.skip(problem)
                continue
        phones = None
        spans = timings.get(utt_id)
        if spans:
            end = spans[-1].end
            if duration is not None and abs(end - duration) > TIMINGS_END_TOLERANCE:
                corpus.skip(
                    f"{tpath}: phones of {utt_id} end at {end:.3f} s, but its audio {audio.name} "
                    f"lasts {duration:.3f} s (audio, transcript or timings belong to another "
                    "recording)"
                )
                continue
            try:
                check_spans(spans)
                phones = tuple(spans)
            except ValueError as exc:
                corpus.warn(f"{tpath}: phones of {utt_id} ignored ({exc}); utterance kept")
        corpus.utterances.append(Utterance(utt_id, audio, text, speaker, chapter, phones))
    for utt_id in sorted(audio_ids - seen):
        corpus.skip(f"{_find_audio(chapter_dir, utt_id)}: no transcript line in {trans.name}")
    orphans = sorted(set(timings) - seen)
    if orphans:
        corpus.warn(
            f"{tpath}: phones of {len(orphans)} utterances not listed in {trans.name} ignored "
            f"({', '.join(orphans[:3])}{', ...' if len(orphans) > 3 else ''})"
        )
