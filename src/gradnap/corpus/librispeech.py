"""Reading LibriSpeech-format corpora.

Layout: ``<root>/<speaker>/<chapter>/<utterance>.flac`` (or ``.wav``) with one
``<speaker>-<chapter>.trans.txt`` per chapter holding ``<utterance> <TEXT>`` lines, and
optionally the phone timings ``<speaker>-<chapter>.phones.tsv`` (:mod:`.timings`).

Nothing here is fatal for a corpus: an utterance with a missing audio file, an empty or
unusable transcript, or (when loaded) corrupt audio is skipped and recorded in
:attr:`Corpus.problems` with a message naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio, log_mel, normalize_text
from ..defaults import FEATURES, FeatureConfig
from ..errors import GradnapError
from .timings import PhoneSpan, read_timings, timings_path

__all__ = ["Utterance", "Corpus", "read_corpus", "AUDIO_SUFFIXES"]

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
    #: Characters removed from transcripts by normalisation.
    removed_chars: int = 0

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def skip(self, message: str) -> None:
        """Record a skipped utterance (logged as a warning)."""
        log.warning("skipped: %s", message)
        self.problems.append(message)

    def audio(self, utt: Utterance, config: FeatureConfig = FEATURES) -> np.ndarray:
        """Samples ``(N,)`` of ``utt``; raises :class:`GradnapError` naming the file."""
        return load_audio(utt.audio_path, config)

    def iter_features(
        self, config: FeatureConfig = FEATURES, utterances: list[Utterance] | None = None
    ) -> Iterator[tuple[Utterance, torch.Tensor]]:
        """Yield ``(utterance, log-mel (F, T))``; unreadable audio is skipped and recorded."""
        for utt in self.utterances if utterances is None else utterances:
            try:
                samples = self.audio(utt, config)
            except GradnapError as exc:
                self.skip(str(exc))
                continue
            yield utt, log_mel(samples, config)

    def with_phones(self) -> list[Utterance]:
        """Utterances that have phone timings."""
        return [u for u in self.utterances if u.phones is not None]

    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})


def _find_audio(chapter_dir: Path, utt_id: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = chapter_dir / f"{utt_id}{suffix}"
        if p.is_file():
            return p
    return None


def read_corpus(root: str | Path) -> Corpus:
    """Read the transcripts, audio paths and (where present) phone timings under ``root``.

    Raises :class:`GradnapError` only when ``root`` is not a directory or holds no
    transcript at all; everything else is skipped and recorded in ``problems``.
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
        raise GradnapError(
            f"{root}: no LibriSpeech-format chapters (<speaker>/<chapter>/*.trans.txt)"
        )
    for chapter_dir in chapter_dirs:
        _read_chapter(corpus, chapter_dir)
    if not corpus.utterances and corpus.problems:
        log.warning("%s: no readable utterance (%d problems)", root, len(corpus.problems))
    return corpus


def _read_chapter(corpus: Corpus, chapter_dir: Path) -> None:
    speaker, chapter = chapter_dir.parent.name, chapter_dir.name
    trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    audio_ids = {p.stem for s in AUDIO_SUFFIXES for p in chapter_dir.glob(f"*{s}")}
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
    if tpath.is_file():
        try:
            timings = read_timings(tpath)
        except GradnapError as exc:
            corpus.skip(f"{exc} (phone timings of this chapter ignored)")
    seen: set[str] = set()
    for no, line in enumerate(trans.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        utt_id, _, raw = line.strip().partition(" ")
        seen.add(utt_id)
        text, removed = normalize_text(raw)
        if not text:
            corpus.skip(f"{trans}:{no}: utterance {utt_id} has no usable text ({raw!r})")
            continue
        if removed:
            log.debug("%s:%d: removed %d characters outside the alphabet", trans, no, removed)
            corpus.removed_chars += removed
        audio = _find_audio(chapter_dir, utt_id)
        if audio is None:
            corpus.skip(
                f"{chapter_dir / utt_id}.flac: audio file missing (listed in {trans.name}:{no})"
            )
            continue
        phones = tuple(timings[utt_id]) if utt_id in timings else None
        corpus.utterances.append(Utterance(utt_id, audio, text, speaker, chapter, phones))
    for utt_id in sorted(audio_ids - seen):
        corpus.skip(f"{_find_audio(chapter_dir, utt_id)}: no transcript line in {trans.name}")
