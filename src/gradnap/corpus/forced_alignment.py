"""Phone timings for LibriSpeech-format corpora by forced alignment with pocketsphinx.

For each utterance: the audio (16 kHz mono, :func:`gradnap.features.load_audio`) is padded
with ``pad_seconds`` of silence on both sides and converted to 16-bit samples; the
transcript's words go to ``Decoder.set_align_text``, one decoding pass aligns words, a
second pass (``set_alignment``) aligns phones, and ``get_alignment()`` gives phone
segments in 10 ms frames. Those are shifted back by the padding (and to the centres of
pocketsphinx's analysis windows, see :class:`gradnap.defaults.AlignmentConfig`), clipped
to the audio, mapped to the 39 ARPAbet phonemes plus ``SIL`` (silence and noise phones
become ``SIL``; neighbouring ``SIL`` are merged) and made contiguous from 0 to the audio's
duration.

Words missing from pocketsphinx's dictionary get a pronunciation from
:class:`gradnap.corpus.lexicon.Lexicon` (CMUdict, then eSpeak NG G2P).

:func:`align_corpus` aligns a whole corpus with a process pool and writes one timings
file per chapter (:mod:`.timings`); an utterance that fails is listed in the chapter's
``<speaker>-<chapter>.align-failures.txt`` and in the report, never fatal.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradnap.corpus.lexicon import Lexicon
from gradnap.corpus.timings import PhoneSpan, check_spans, read_timings, timings_path, write_timings
from gradnap.defaults import ALIGNMENT, FEATURES, PHONEMES, SILENCE, AlignmentConfig
from gradnap.errors import GradnapError
from gradnap.features import check_not_silent, load_audio
from gradnap.fileio import atomic_write_text

__all__ = [
    "AlignmentError",
    "AlignmentQuality",
    "Aligner",
    "AlignmentReport",
    "align_corpus",
    "alignment_quality",
    "boundary_errors",
    "check_words",
    "failures_path",
    "map_phone",
    "speech_frames",
]

log = logging.getLogger(__name__)

_PHONEMES = frozenset(PHONEMES)


class AlignmentError(GradnapError):
    """One utterance could not be aligned (the message says why)."""


def map_phone(name: str) -> str:
    """pocketsphinx phone -> one of :data:`gradnap.defaults.PHONE_SET`.

    The en-us model's phones are the 39 ARPAbet phonemes (kept), ``SIL`` and the noise
    phones ``+NSN+``, ``+SPN+`` (-> ``SIL``). Anything else raises :class:`AlignmentError`.
    """
    if name in _PHONEMES:
        return name
    if name == SILENCE or (name.startswith("+") and name.endswith("+")):
        return SILENCE
    raise AlignmentError(f"pocketsphinx phone {name!r} has no ARPAbet equivalent")


def failures_path(chapter_dir: Path) -> Path:
    """The file listing the utterances of a chapter that could not be aligned."""
    chapter_dir = Path(chapter_dir)
    return chapter_dir / f"{chapter_dir.parent.name}-{chapter_dir.name}.align-failures.txt"


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] ``(N,)`` -> 16-bit PCM ``(N,)`` (clipped)."""
    return np.clip(np.rint(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767).astype(
        np.int16
    )


#: 0.3 s of 16-bit digital silence at 16 kHz (see :meth:`Aligner._decode`).
_RESET = bytes(2 * 4800)


def check_words(expected: list[str], aligned: list[str]) -> None:
    """Raise :class:`AlignmentError` unless the words pocketsphinx aligned (``aligned``:
    its word names, with fillers such as ``<sil>`` and pronunciation numbers such as
    ``as(2)``) are exactly ``expected``. Its search can end early and leave out the rest
    of the transcript (seen on synthesized speech with the right transcript)."""
    got = [re.sub(r"\(\d+\)$", "", w) for w in aligned if not w.startswith(("<", "[", "+"))]
    if got == expected:
        return
    k = 0
    while k < min(len(got), len(expected)) and got[k] == expected[k]:
        k += 1
    if k == len(got):
        raise AlignmentError(
            f"the alignment stops after {k} of the {len(expected)} words "
            f"(leaves out {' '.join(expected[k:])!r})"
        )
    raise AlignmentError(f"the aligned words {' '.join(got)!r} differ from the transcript")


def speech_frames(pcm: np.ndarray, config: AlignmentConfig = ALIGNMENT) -> np.ndarray:
    """Which 10 ms frames of ``pcm`` ``(N,)`` (16 kHz) hold speech, by energy: ``(N // 160,)``
    bool. A frame is speech when its energy is within ``config.speech_range_db`` of the
    loudest frame and ``config.speech_floor_db`` above the quietest tenth of the frames
    (the noise floor), so neither digital silence nor steady noise counts."""
    hop = FEATURES.sample_rate // 100
    n = len(pcm) // hop
    if n == 0:
        return np.zeros(0, dtype=bool)
    frames = np.asarray(pcm[: n * hop], dtype=np.float64).reshape(n, hop) / 32768.0
    db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)  # (n,) dBFS
    floor = np.percentile(db, 10)
    return db > max(db.max() - config.speech_range_db, floor + config.speech_floor_db)


@dataclass(frozen=True)
class AlignmentQuality:
    """How well an utterance's transcript fits its audio, judged by its alignment
    (docs/alignment.md, "Alignment quality")."""

    #: Share of the speech frames (:func:`speech_frames`) that the alignment places in
    #: SIL: high when spoken words are missing from the transcript. 0 without speech.
    silence_share: float
    #: Seconds of speech frames.
    speech_seconds: float
    #: Mean acoustic score per frame of the aligned phonemes (not SIL), in pocketsphinx's
    #: log units relative to the best-scoring senone of each frame (0 = best possible).
    phone_score: float

    def problem(self, config: AlignmentConfig = ALIGNMENT) -> str | None:
        """Why the alignment is rejected under ``config``'s thresholds, or ``None``."""
        limit = config.max_silence_share
        if limit is not None and self.silence_share > limit:
            return (
                f"{self.silence_share:.0%} of the {self.speech_seconds:.1f} s of speech "
                f"aligned as silence (more than {limit:.0%})"
            )
        return None

    def warning(self, config: AlignmentConfig = ALIGNMENT) -> str | None:
        """Why the (kept) alignment is doubtful under ``config``'s thresholds, or ``None``."""
        low = config.warn_phone_score
        if low is not None and self.phone_score < low:
            return f"acoustic score {self.phone_score:.1f} per frame (below {low:g})"
        return None


def alignment_quality(
    pcm: np.ndarray,
    spans: list[PhoneSpan],
    segments: list[tuple[str, int, int, int]],
    config: AlignmentConfig = ALIGNMENT,
) -> AlignmentQuality:
    """The :class:`AlignmentQuality` of ``spans`` (seconds) for audio ``pcm`` ``(N,)``;
    ``segments``: pocketsphinx's ``(phone, start, frames, score)`` (for the score)."""
    speech = speech_frames(pcm, config)  # (T,)
    centres = (np.arange(len(speech)) + 0.5) / 100.0
    silent = np.zeros(len(speech), dtype=bool)
    for span in spans:
        if span.phone == SILENCE:
            silent[(centres >= span.start) & (centres < span.end)] = True
    n_speech = int(speech.sum())
    share = float((speech & silent).sum() / n_speech) if n_speech else 0.0
    phones = [seg for seg in segments if map_phone(seg[0]) != SILENCE]
    frames = sum(seg[2] for seg in phones)
    score = float(sum(seg[3] for seg in phones) / frames) if frames else 0.0
    return AlignmentQuality(share, n_speech / 100.0, score)


class Aligner:
    """A pocketsphinx forced aligner for one process (not thread-safe).

    ``aligner.align(samples, text)`` -> phone spans of one utterance; samples ``(N,)``
    mono at 16 kHz (float in [-1, 1] or int16), text: words separated by spaces
    (normalised transcript: a-z and apostrophes).
    """

    def __init__(self, config: AlignmentConfig = ALIGNMENT, lexicon: Lexicon | None = None):
        self.config = config
        self.lexicon = lexicon if lexicon is not None else Lexicon()
        self.sample_rate = FEATURES.sample_rate
        #: Words pronounced by the lexicon (not pocketsphinx's dictionary): word -> source.
        self.added_words: dict[str, str] = {}
        #: Attempts that failed before another attempt (dither) aligned the utterance.
        self.retries = 0
        self._decoder: Any = None
        self._added: set[str] = set()  # words added to the current decoder

    def _new_decoder(self):
        from pocketsphinx import Decoder, get_model_path

        cfg = self.config
        hmm = cfg.acoustic_model or get_model_path("en-us/en-us")
        dic = cfg.dictionary or get_model_path("en-us/cmudict-en-us.dict")
        for what, path in (("acoustic model", hmm), ("dictionary", dic)):
            if not Path(path).exists():
                raise GradnapError(f"{path}: pocketsphinx {what} not found")
        decoder = Decoder(
            hmm=hmm, dict=dic, lm=None, loglevel="FATAL", samprate=float(self.sample_rate)
        )
        self._frate = int(decoder.config["frate"])
        self._wlen = float(decoder.config["wlen"])
        self._added = set()
        return decoder

    @property
    def decoder(self):
        """The pocketsphinx ``Decoder`` (created on first use, re-created after a failure)."""
        if self._decoder is None:
            self._decoder = self._new_decoder()
        return self._decoder

    def pronounce(self, words: Iterable[str]) -> None:
        """Make every word known to the decoder; raises :class:`AlignmentError` naming
        the words that neither pocketsphinx's dictionary, CMUdict nor G2P knows."""
        decoder = self.decoder
        missing = []
        for word in dict.fromkeys(words):
            if word in self._added or decoder.lookup_word(word) is not None:
                continue
            pron = self.lexicon.lookup(word)
            if pron is None:
                missing.append(word)
                continue
            try:
                decoder.add_word(word, " ".join(pron.phones), True)
            except RuntimeError as exc:
                raise AlignmentError(
                    f"pocketsphinx rejected the pronunciation {' '.join(pron.phones)} "
                    f"of {word!r} ({exc})"
                ) from None
            self._added.add(word)
            self.added_words[word] = pron.source
            log.debug("pronounced %r as %s (%s)", word, " ".join(pron.phones), pron.source)
        if missing:
            g2p = "" if self.lexicon.g2p is not None else " (no G2P fallback available)"
            raise AlignmentError(
                "no pronunciation for "
                + ", ".join(repr(w) for w in missing)
                + f" in pocketsphinx's dictionary or CMUdict{g2p}"
            )

    def align(self, samples: np.ndarray, text: str) -> list[PhoneSpan]:
        """Phone spans of one utterance, contiguous from 0 to its duration.

        ``samples``: ``(N,)`` at 16 kHz. Raises :class:`AlignmentError` when the words
        cannot be pronounced, the audio cannot be aligned to them, or the alignment is
        poor (:meth:`align_with_quality`).
        """
        return self.align_with_quality(samples, text)[0]

    def align_with_quality(
        self, samples: np.ndarray, text: str
    ) -> tuple[list[PhoneSpan], AlignmentQuality]:
        """:meth:`align` and the alignment's :class:`AlignmentQuality`.

        An alignment that leaves out words of the transcript (pocketsphinx's search can
        end early) is a failed attempt and retried with the next dither; one whose
        quality is below :class:`~gradnap.defaults.AlignmentConfig`'s thresholds raises
        :class:`AlignmentError` at once (a transcript that does not match its audio does
        not align better with noise added).
        """
        samples = np.asarray(samples).reshape(-1)
        pcm = samples if samples.dtype == np.int16 else to_int16(samples)  # (N,)
        duration = len(pcm) / self.sample_rate
        words = [w for w in (t.strip() for t in text.split()) if w.strip("'")]
        if not words:
            raise AlignmentError("transcript has no words")
        if duration == 0:
            raise AlignmentError("audio holds no samples")
        dithers = self.config.dither or (0.0,)
        for attempt, dither in enumerate(dithers):
            self.pronounce(words)  # again after a failure: the decoder is a new one
            data = self._padded(pcm, dither).tobytes()
            try:
                segments = self._decode(self.decoder, data, " ".join(words))
                spans = self._spans(segments, duration)
                break
            except AlignmentError as exc:
                self._decoder = None  # a failed search leaves the decoder unusable
                if attempt + 1 == len(dithers):
                    raise
                log.debug("dither %g: %s; trying again", dither, exc)
                self.retries += 1
        quality = alignment_quality(pcm, spans, segments, self.config)
        problem = quality.problem(self.config)
        if problem is not None:
            raise AlignmentError(f"poor alignment: {problem}; does the transcript match the audio?")
        return spans, quality

    def _padded(self, pcm: np.ndarray, dither: float) -> np.ndarray:
        """``(N,)`` int16 -> ``(N + 2 P,)`` int16: silence padding plus seeded noise."""
        pad = round(self.config.pad_seconds * self.sample_rate)
        if dither <= 0:
            zeros = np.zeros(pad, dtype=np.int16)
            return np.concatenate([zeros, pcm, zeros])
        x = np.zeros(len(pcm) + 2 * pad, dtype=np.float64)
        x[pad : pad + len(pcm)] = pcm
        x += np.random.default_rng(len(pcm)).normal(0.0, dither, len(x))
        return np.clip(np.rint(x), -32768, 32767).astype(np.int16)

    @staticmethod
    def _decode(decoder, data: bytes, text: str) -> list[tuple[str, int, int, int]]:
        """Two passes (words, then phones) -> ``[(phone, start frame, frames, score)]``.

        ``score``: the phone's acoustic score summed over its frames (pocketsphinx's log
        units, relative to the best-scoring senone of each frame, so <= 0).
        pocketsphinx carries some state from the end of one utterance into the next;
        0.3 s of digital silence processed first (without search) resets it to the same
        state every time, so results do not depend on the previous utterance. Raises
        :class:`AlignmentError` when the alignment leaves out words of ``text``.
        """
        try:
            decoder.set_align_text(text)
            decoder.start_utt()
            decoder.process_raw(_RESET, no_search=True, full_utt=True)
            decoder.end_utt()
            decoder.start_utt()
            decoder.process_raw(data, full_utt=True)
            decoder.end_utt()
            if decoder.hyp() is None:
                raise AlignmentError("the words could not be aligned to the audio")
            decoder.set_alignment()
            decoder.start_utt()
            decoder.process_raw(data, full_utt=True)
            decoder.end_utt()
            alignment = decoder.get_alignment()
        except RuntimeError as exc:
            raise AlignmentError(f"pocketsphinx: {exc}") from None
        if alignment is None:
            raise AlignmentError("pocketsphinx returned no phone alignment")
        check_words(text.split(), [w.name for w in alignment.words()])
        return [(p.name, p.start, p.duration, p.score) for p in alignment.phones()]

    def _spans(self, segments: list[tuple], duration: float) -> list[PhoneSpan]:
        """Phone segments ``(name, start frame, frames, ...)`` in (padded) frames ->
        contiguous spans in seconds of the audio."""
        if not segments:
            raise AlignmentError("pocketsphinx returned an empty alignment")
        shift = self.config.pad_seconds
        if self.config.window_centre:
            shift -= self._wlen / 2 - 0.5 / self._frate
        # Boundaries in seconds of the unpadded audio: start of each segment, end of the last.
        names = [map_phone(seg[0]) for seg in segments]
        starts = [seg[1] / self._frate - shift for seg in segments]
        start, dur = segments[-1][1:3]
        bounds = np.array(starts + [(start + dur) / self._frate - shift])
        bounds = np.round(np.clip(bounds, 0.0, duration), 3)
        bounds[0], bounds[-1] = 0.0, round(duration, 3)
        spans: list[PhoneSpan] = []
        for phone, a, b in zip(names, bounds[:-1], bounds[1:], strict=True):
            if b <= a:
                if phone != SILENCE:
                    raise AlignmentError(
                        f"phone {phone} was aligned outside the audio (at {a:.3f} s)"
                    )
                continue
            if spans and phone == SILENCE and spans[-1].phone == SILENCE:
                spans[-1] = PhoneSpan(SILENCE, spans[-1].start, float(b))
            else:
                spans.append(PhoneSpan(phone, float(a), float(b)))
        try:
            check_spans(spans, duration)
        except ValueError as exc:
            raise AlignmentError(f"inconsistent alignment: {exc}") from None
        return spans

    def align_file(self, path: str | Path, text: str) -> tuple[list[PhoneSpan], float]:
        """Align one audio file: ``(spans, duration in seconds)``."""
        samples = load_audio(path)  # (N,)
        return self.align(samples, text), len(samples) / self.sample_rate


@dataclass
class AlignmentReport:
    """What :func:`align_corpus` did."""

    root: Path
    #: Utterances aligned in this run.
    aligned: int = 0
    #: ``(utterance id, message)`` of every utterance that failed in this run.
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: Chapters (and their utterances) left alone because they already had timings.
    skipped_chapters: int = 0
    skipped_utterances: int = 0
    #: Problems met while reading the corpus (those utterances were not aligned).
    corpus_problems: list[str] = field(default_factory=list)
    #: Words pronounced by CMUdict or G2P: word -> source.
    added_words: dict[str, str] = field(default_factory=dict)
    #: Aligned utterances whose first attempt failed (aligned with another dither).
    retried: int = 0
    #: Utterance id -> :class:`AlignmentQuality` of every utterance aligned in this run.
    quality: dict[str, AlignmentQuality] = field(default_factory=dict)
    #: ``(utterance id, message)`` of aligned utterances whose quality is doubtful
    #: (:meth:`AlignmentQuality.warning`; their timings are written).
    doubtful: list[tuple[str, str]] = field(default_factory=list)
    #: Seconds of audio aligned (or attempted) and wall-clock seconds it took.
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    jobs: int = 1

    @property
    def speed(self) -> float:
        """Seconds of audio aligned per second of wall-clock time (x real time)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def real_time_factor(self) -> float:
        """Wall-clock seconds per second of audio (lower is faster)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else 0.0

    def summary(self) -> str:
        """A few lines for the command line."""
        lines = [
            f"{self.root}: aligned {self.aligned}, failed {len(self.failed)}, "
            f"skipped {self.skipped_utterances} utterances "
            f"({self.skipped_chapters} chapters already had timings)"
        ]
        if self.audio_seconds > 0:
            lines.append(
                f"{self.audio_seconds / 60:.1f} min of audio in {self.wall_seconds:.1f} s with "
                f"{self.jobs} job(s): {self.speed:.1f}x real time "
                f"(real-time factor {self.real_time_factor:.3f})"
            )
        if self.added_words:
            by = {s: sum(v == s for v in self.added_words.values()) for s in ("cmudict", "g2p")}
            lines.append(
                f"words not in pocketsphinx's dictionary: {by['cmudict']} from CMUdict, "
                f"{by['g2p']} from G2P"
            )
        if self.retried:
            lines.append(f"{self.retried} aligned only on a second attempt (with dither)")
        if self.quality:
            shares = np.array([q.silence_share for q in self.quality.values()])
            lines.append(
                f"speech aligned as silence: median {np.median(shares):.0%}, "
                f"worst {shares.max():.0%} (docs/alignment.md)"
            )
        poor = sum("poor alignment" in m for _, m in self.failed)
        if poor:
            lines.append(
                f"{poor} rejected as poor alignments: check their transcripts "
                "(docs/alignment.md, 'Alignment quality')"
            )
        if self.doubtful:
            lines.append(
                f"{len(self.doubtful)} aligned with a low acoustic score (timings written; "
                "check their transcripts):"
            )
            lines += [f"  {msg}" for _, msg in self.doubtful[:10]]
            if len(self.doubtful) > 10:
                lines.append(f"  ... and {len(self.doubtful) - 10} more")
        for utt, msg in self.failed[:10]:
            lines.append(f"  failed {utt}: {msg}")
        if len(self.failed) > 10:
            lines.append(f"  ... and {len(self.failed) - 10} more (see *.align-failures.txt)")
        if self.corpus_problems:
            lines.append(
                f"{len(self.corpus_problems)} corpus problems (not aligned), first: "
                f"{self.corpus_problems[0]}"
            )
        return "\n".join(lines)


def boundary_errors(reference: list[PhoneSpan], hypothesis: list[PhoneSpan]) -> np.ndarray:
    """Signed errors (hypothesis - reference, seconds) of the phone boundaries both agree on.

    The two phone sequences are matched with :class:`difflib.SequenceMatcher` (longest
    common blocks of equal labels). A boundary counts when the phones on *both* sides of
    it are matched: consecutive reference phones ``i, i + 1`` matched to consecutive
    hypothesis phones ``j, j + 1``; its error is ``hypothesis[j].end - reference[i].end``.
    Boundaries next to an inserted, deleted or substituted phone (e.g. an optional
    pause between words that only one side has) are left out, and so are the start and
    end of the utterance. Returns shape ``(n_boundaries,)``.
    """
    import difflib

    ref = [s.phone for s in reference]
    hyp = [s.phone for s in hypothesis]
    pairs = [
        (block.a + k, block.b + k)
        for block in difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_matching_blocks()
        for k in range(block.size)
    ]
    errors = [
        hypothesis[j].end - reference[i].end
        for (i, j), (i2, j2) in zip(pairs, pairs[1:], strict=False)
        if i2 == i + 1 and j2 == j + 1
    ]
    return np.asarray(errors, dtype=np.float64)


# --- process pool -----------------------------------------------------------------------

_WORKER: Aligner | None = None
#: With ``jobs=None``, at most one worker per this many utterances.
_TASKS_PER_WORKER = 10


def _init_worker(config: AlignmentConfig) -> None:
    global _WORKER
    _WORKER = Aligner(config)


@dataclass(frozen=True)
class _Result:
    utt_id: str
    chapter_dir: Path
    spans: list[PhoneSpan] | None
    error: str | None
    duration: float
    added_words: dict[str, str]
    retried: bool = False
    quality: AlignmentQuality | None = None


def _align_task(task: tuple[str, Path, str]) -> _Result:
    utt_id, audio_path, text = task
    aligner = _WORKER
    assert aligner is not None, "worker not initialised"
    before, retries = len(aligner.added_words), aligner.retries
    duration = 0.0
    try:
        samples = load_audio(audio_path)  # (N,)
        duration = len(samples) / aligner.sample_rate
        check_not_silent(samples, audio_path)
    except GradnapError as exc:
        return _Result(utt_id, audio_path.parent, None, str(exc), duration, {})
    spans: list[PhoneSpan] | None = None
    quality = error = None
    try:
        spans, quality = aligner.align_with_quality(samples, text)
    except GradnapError as exc:
        error = f"{audio_path}: {exc}"
    except Exception as exc:  # never let one utterance stop the corpus
        error = f"{audio_path}: unexpected {type(exc).__name__}: {exc}"
    added = dict(list(aligner.added_words.items())[before:])
    retried = spans is not None and aligner.retries > retries
    return _Result(utt_id, audio_path.parent, spans, error, duration, added, retried, quality)


def _run_tasks(
    tasks: list[tuple[str, Path, str]], jobs: int, config: AlignmentConfig
) -> Iterator[_Result]:
    if jobs <= 1:
        _init_worker(config)
        for task in tasks:
            yield _align_task(task)
        return
    # spawn: workers do not inherit the parent's threads (torch) or open files.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(config,)) as pool:
        yield from pool.imap_unordered(_align_task, tasks, chunksize=1)


def _has_timings(chapter_dir: Path) -> bool:
    path = timings_path(chapter_dir)
    if not path.is_file():
        return False
    try:
        read_timings(path)
    except GradnapError as exc:
        log.warning("%s; re-aligning the chapter", exc)
        return False
    return True


def align_corpus(
    root: str | Path,
    jobs: int | None = None,
    overwrite: bool = False,
    config: AlignmentConfig = ALIGNMENT,
    progress: bool = True,
) -> AlignmentReport:
    """Force-align every utterance of the LibriSpeech-format corpus at ``root``.

    Writes ``<speaker>-<chapter>.phones.tsv`` into each chapter directory as soon as all
    its utterances are done (atomically, so an interrupted run resumes at the chapters
    not yet written) and ``<speaker>-<chapter>.align-failures.txt`` listing the
    utterances that could not be aligned (removed when none failed); an alignment whose
    :class:`AlignmentQuality` is poor counts as failed. Chapters that already have a
    readable timings file are skipped unless ``overwrite``. An aligned chapter's timings
    file is replaced by this run's alignments; when every utterance failed, an old file
    is removed (it would not match the transcripts), so the chapter is tried again next
    time. With ``overwrite``, the timings of chapters without a readable utterance are
    removed too. Existing timings are never read (they may be the stale ones).

    ``jobs``: worker processes (default: all cores, but at most one per 10 utterances,
    since each worker spends about 2 s starting); 1 runs in this process.
    Raises :class:`GradnapError` only when ``root`` is not a corpus.
    """
    from tqdm import tqdm

    from gradnap.corpus.librispeech import read_corpus

    root = Path(root)
    corpus = read_corpus(root, timings=False)
    report = AlignmentReport(root=root, corpus_problems=list(corpus.problems))
    chapters: dict[Path, list[tuple[str, Path, str]]] = {}
    for utt in corpus.utterances:
        chapters.setdefault(utt.audio_path.parent, []).append((utt.id, utt.audio_path, utt.text))
    if overwrite:  # chapters without a readable utterance keep no timings either
        for tpath in sorted(root.glob("*/*/*.phones.tsv")):
            if tpath == timings_path(tpath.parent) and tpath.parent not in chapters:
                tpath.unlink()
                log.warning("%s: removed (--overwrite; no readable utterance to align)", tpath)
    tasks: list[tuple[str, Path, str]] = []
    for chapter_dir, utts in chapters.items():
        if not overwrite and _has_timings(chapter_dir):
            report.skipped_chapters += 1
            report.skipped_utterances += len(utts)
        else:
            tasks.extend(utts)
    pending: dict[Path, int] = {}  # chapter -> utterances to align
    for _, path, _ in tasks:
        pending[path.parent] = pending.get(path.parent, 0) + 1
    if jobs is None:  # each worker first spends ~2 s importing: few tasks, few workers
        jobs = min(os.cpu_count() or 1, max(1, len(tasks) // _TASKS_PER_WORKER))
    jobs = max(1, min(jobs, len(tasks) or 1))
    report.jobs = jobs
    if not tasks:
        log.info("%s: nothing to align", root)
        return report

    done: dict[Path, list[_Result]] = {d: [] for d in pending}
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), unit="utt", desc="aligning", disable=None if progress else True)
    try:
        for res in _run_tasks(tasks, jobs, config):
            bar.update()
            report.audio_seconds += res.duration
            report.added_words.update(res.added_words)
            if res.error is not None:
                log.warning("alignment failed: %s", res.error)
                report.failed.append((res.utt_id, res.error))
            else:
                report.aligned += 1
                report.retried += res.retried
                if res.quality is not None:
                    report.quality[res.utt_id] = res.quality
                    doubt = res.quality.warning(config)
                    if doubt is not None:
                        msg = f"{res.chapter_dir / res.utt_id}: aligned, but {doubt}"
                        log.warning("%s; does the transcript match the audio?", msg)
                        report.doubtful.append((res.utt_id, msg))
            done[res.chapter_dir].append(res)
            if len(done[res.chapter_dir]) == pending[res.chapter_dir]:
                _write_chapter(res.chapter_dir, done.pop(res.chapter_dir))
    finally:
        bar.close()
        report.wall_seconds = time.perf_counter() - start
    report.failed.sort()
    report.doubtful.sort()
    log.info(
        "aligned %d utterances, %d failed, %.1fx real time",
        report.aligned,
        len(report.failed),
        report.speed,
    )
    return report


def _write_chapter(chapter_dir: Path, results: list[_Result]) -> None:
    """Replace the chapter's timings and failure list by this run's (no stale timings)."""
    timings = {r.utt_id: r.spans for r in results if r.spans is not None}
    failures = sorted((r.utt_id, r.error or "") for r in results if r.spans is None)
    fpath = failures_path(chapter_dir)
    if failures:
        atomic_write_text(fpath, "".join(f"{u}\t{m}\n" for u, m in failures))
    else:
        fpath.unlink(missing_ok=True)
    tpath = timings_path(chapter_dir)
    if timings:
        write_timings(tpath, timings)
    elif tpath.is_file():
        tpath.unlink()
        log.warning(
            "%s: removed (no utterance of the chapter aligned in this run; see %s)",
            tpath,
            fpath.name,
        )
