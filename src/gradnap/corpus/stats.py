"""Statistics of a LibriSpeech-format corpus (``gradnap corpus info DIR``).

Hours of audio, utterances per speaker (voice), examples (phone spans) and seconds per
phoneme, and the rarest phonemes - the groups that will be smallest in a phoneme
GradNAP run. Durations come from the audio files' headers.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from gradnap.corpus.librispeech import read_corpus
from gradnap.defaults import PHONEMES, SILENCE

__all__ = ["CorpusStats", "corpus_stats"]

log = logging.getLogger(__name__)


@dataclass
class CorpusStats:
    """Counts of one corpus; :meth:`summary` formats them."""

    root: Path
    utterances: int = 0
    seconds: float = 0.0
    #: speaker directory -> (utterances, seconds)
    per_speaker: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: speaker directory -> voice name (from a synthesized corpus's corpus.json)
    voice_names: dict[str, str] = field(default_factory=dict)
    with_phones: int = 0
    #: phone -> number of spans (examples), and their total duration in seconds
    phone_counts: Counter = field(default_factory=Counter)
    phone_seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    complete: bool | None = None

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    def rarest(self, k: int = 5) -> list[tuple[str, int]]:
        """The ``k`` phonemes (of the 39, ``SIL`` excluded) with the fewest examples."""
        counts = [(p, self.phone_counts.get(p, 0)) for p in PHONEMES]
        return sorted(counts, key=lambda pc: (pc[1], pc[0]))[:k]

    def summary(self) -> str:
        lines = [
            f"corpus {self.root}: {self.utterances} utterances, {self.hours:.2f} h "
            f"({self.seconds / max(self.utterances, 1):.2f} s per utterance), "
            f"{len(self.per_speaker)} speakers"
        ]
        if self.complete is False:
            lines.append("  (corpus.json says synthesis is not complete)")
        if self.problems:
            lines.append(
                f"  {len(self.problems)} problems while reading (first: {self.problems[0]})"
            )
        lines.append("utterances per speaker:")
        width = max((len(s) for s in self.per_speaker), default=7)
        for spk, (n, sec) in sorted(self.per_speaker.items()):
            name = self.voice_names.get(spk, "")
            label = f"{spk:<{width}}" + (f"  {name:<18}" if self.voice_names else "")
            lines.append(f"  {label}  {n:6d}  {sec / 60:7.1f} min")
        if not self.with_phones:
            lines.append("no phone timings (run `gradnap corpus align` for a user corpus)")
            return "\n".join(lines)
        lines.append(
            f"phone timings: {self.with_phones} of {self.utterances} utterances; "
            "examples (spans) and seconds per phoneme:"
        )
        order = sorted(self.phone_counts.items(), key=lambda pc: (-pc[1], pc[0]))
        cells = [f"{p:<3} {n:7d} {self.phone_seconds.get(p, 0.0):8.1f} s" for p, n in order]
        for i in range(0, len(cells), 3):
            lines.append("  " + "    ".join(cells[i : i + 3]))
        missing = [p for p in PHONEMES if not self.phone_counts.get(p)]
        if missing:
            lines.append(f"phonemes without examples: {' '.join(missing)}")
        lines.append("rarest phonemes: " + ", ".join(f"{p} ({n})" for p, n in self.rarest(5)))
        return "\n".join(lines)


def corpus_stats(root: str | Path) -> CorpusStats:
    """Statistics of the corpus in ``root`` (read with :func:`read_corpus`)."""
    import soundfile as sf

    root = Path(root)
    corpus = read_corpus(root)
    stats = CorpusStats(root=root, problems=list(corpus.problems))
    manifest = root / "corpus.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            stats.voice_names = dict(data.get("speakers", {}))
            stats.complete = bool(data.get("complete"))
        except (OSError, ValueError) as exc:
            stats.problems.append(f"{manifest}: unreadable ({exc})")
    per: dict[str, list[float]] = {}
    phone_seconds: defaultdict[str, float] = defaultdict(float)
    for utt in corpus:
        try:
            seconds = float(sf.info(str(utt.audio_path)).duration)
        except Exception as exc:  # corrupt header: already reported by read_corpus
            log.debug("%s: %s", utt.audio_path, exc)
            continue
        stats.utterances += 1
        stats.seconds += seconds
        per.setdefault(utt.speaker, []).append(seconds)
        if utt.phones:
            stats.with_phones += 1
            for span in utt.phones:
                stats.phone_counts[span.phone] += 1
                phone_seconds[span.phone] += span.end - span.start
    stats.per_speaker = {spk: (len(v), sum(v)) for spk, v in per.items()}
    stats.phone_seconds = dict(phone_seconds)
    if SILENCE in stats.phone_counts:
        log.debug("%s: %d silence spans", root, stats.phone_counts[SILENCE])
    return stats
