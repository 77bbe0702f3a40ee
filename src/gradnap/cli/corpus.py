"""``gradnap corpus synth|align|info``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("corpus", help="synthesize, align or inspect a corpus")
    sub = parser.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)

    synth = sub.add_parser(
        "synth",
        help="synthesize an English corpus with exact phone timings (flite, eSpeak NG)",
        description="Write a LibriSpeech-format corpus with phone timings, synthesized offline "
        "(flite and eSpeak NG voices, seeded text and prosody). Running it again with the same "
        "arguments finishes an interrupted or incomplete corpus. Exit status 1 when utterances "
        "are missing at the end. See docs/corpus.md.",
    )
    synth.add_argument("--out", type=Path, required=True, help="corpus directory to write")
    synth.add_argument("--utterances", type=int, default=3000, help="number of utterances")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    synth.add_argument(
        "--voices",
        nargs="+",
        default=None,
        help="flite voices (slt rms awb kal16), eSpeak voices accent[+variant] (en-us+f2, "
        "en-gb-x-rp+f3...) or the groups flite, espeak, all (default: all 15)",
    )
    synth.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    synth.set_defaults(func=_synth)

    align = sub.add_parser(
        "align",
        help="add phone timings to a LibriSpeech-format corpus by forced alignment",
        description="Force-align every utterance with pocketsphinx and write phone timings "
        "(<speaker>-<chapter>.phones.tsv) per chapter; utterances that fail, including poor "
        "alignments (a transcript that does not match its audio), are listed in "
        "<speaker>-<chapter>.align-failures.txt. See docs/alignment.md.",
    )
    align.add_argument("corpus", type=Path, help="LibriSpeech-format corpus directory")
    align.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes (default: cores, at most one per 10 utterances)",
    )
    align.add_argument(
        "--overwrite",
        action="store_true",
        help="re-align chapters that have timings (old timings that no longer fit are removed)",
    )
    align.set_defaults(func=_align)

    info = sub.add_parser(
        "info",
        help="print statistics of a corpus",
        description="Hours, utterances per speaker, examples and seconds per phoneme, rarest "
        "phonemes.",
    )
    info.add_argument("corpus", type=Path, help="LibriSpeech-format corpus directory")
    info.set_defaults(func=_info)


def _synth(args: argparse.Namespace) -> int:
    from gradnap.corpus.synth import synthesize_corpus
    from gradnap.fileio import check_writable

    check_writable(args.out, "--out", directory=True)
    report = synthesize_corpus(
        args.out, utterances=args.utterances, seed=args.seed, voices=args.voices, jobs=args.jobs
    )
    print(report.summary())
    return 0 if report.complete else 1


def _align(args: argparse.Namespace) -> int:
    from gradnap.corpus.forced_alignment import align_corpus

    report = align_corpus(args.corpus, jobs=args.jobs, overwrite=args.overwrite)
    print(report.summary())
    return 0


def _info(args: argparse.Namespace) -> int:
    from gradnap.corpus.stats import corpus_stats

    print(corpus_stats(args.corpus).summary())
    return 0
