"""``gradnap eval``: CER and WER of a model on a corpus, greedy and beam search."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gradnap.cli.common import FEATURE_CACHE_HELP, MODEL_HELP, NO_PROGRESS_HELP, THREADS_HELP

SPLITS = ("all", "train", "valid", "test", "heldout", "holdout-voice")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="CER and WER of a model on a corpus (greedy and beam search)",
        description=(
            "Transcribe a LibriSpeech-format corpus and print CER and WER for greedy and "
            "beam-search decoding, overall and per speaker. --split selects part of the "
            "corpus using the held-out voices and sentence fraction stored in the checkpoint."
        ),
    )
    p.add_argument("--model", default="default", help=MODEL_HELP)
    p.add_argument("--corpus", type=Path, required=True, help="LibriSpeech-format corpus directory")
    p.add_argument(
        "--split",
        default="all",
        choices=SPLITS,
        help="utterances to score: all, train, valid, test, heldout (valid+test) or holdout-voice",
    )
    p.add_argument(
        "--holdout-voice",
        nargs="*",
        default=None,
        metavar="V",
        help="held-out voices (default: the checkpoint's)",
    )
    p.add_argument(
        "--beam-size",
        type=int,
        default=32,
        help="beam width; 0 = greedy only",
    )
    p.add_argument(
        "--char-lm",
        type=int,
        default=0,
        metavar="ORDER",
        help="beam search with a character n-gram LM of this order trained on the "
        "transcripts of the training split; 0 = no LM",
    )
    p.add_argument("--lm-weight", type=float, default=0.5, help="LM weight")
    p.add_argument("--word-score", type=float, default=0.0, help="score added per word")
    p.add_argument(
        "--max-utterances",
        type=int,
        default=None,
        metavar="N",
        help="score only the first N utterances of the split (default: all)",
    )
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument(
        "--show", type=int, default=0, metavar="N", help="print N reference/hypothesis pairs"
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the figures to this JSON file (default: none)",
    )
    p.add_argument(
        "--feature-cache", type=Path, default=None, metavar="DIR", help=FEATURE_CACHE_HELP
    )
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import os

    import torch

    from gradnap.asr.data import load_features, split_corpus
    from gradnap.asr.decode import BeamDecoder, CharNgramLM
    from gradnap.asr.evaluate import evaluate_model
    from gradnap.asr.modelfile import load_model
    from gradnap.corpus.librispeech import read_corpus
    from gradnap.defaults import TRAIN
    from gradnap.errors import GradnapError
    from gradnap.fileio import atomic_write_text, check_writable

    if args.json is not None:
        check_writable(args.json, "--json")  # before the evaluation
    torch.set_num_threads(args.threads or min(4, os.cpu_count() or 1))
    model = load_model(args.model)
    corpus = read_corpus(args.corpus)
    examples = load_features(
        corpus, model.features, cache_dir=args.feature_cache, progress=not args.no_progress
    )
    meta = model.metadata
    voices = (
        args.holdout_voice if args.holdout_voice is not None else meta.get("holdout_voices", [])
    )
    fraction = meta.get("heldout_fraction", TRAIN.heldout_fraction)
    split = split_corpus(examples, voices, fraction)
    lm = None
    if args.char_lm > 0:
        lm = CharNgramLM([e.utterance.text for e in split.train], order=args.char_lm)
    if args.split != "all":
        parts = {
            "train": split.train,
            "valid": split.valid,
            "test": split.test,
            "heldout": split.valid + split.test,
            "holdout-voice": split.holdout_voice,
        }
        examples = parts[args.split]
    if args.max_utterances is not None:
        examples = examples[: args.max_utterances]
    if not examples:
        raise GradnapError(f"--split {args.split}: no utterances of {args.corpus} in this split")
    beam = None
    if args.beam_size > 0:
        beam = BeamDecoder(
            beam_size=args.beam_size, lm=lm, lm_weight=args.lm_weight if lm else 0.0,
            word_score=args.word_score,
        )  # fmt: skip
    beam_name = f"beam {args.beam_size}" + (f" + {args.char_lm}-gram LM" if lm else "")
    res = evaluate_model(model, examples, beam=beam, progress=not args.no_progress)

    print(
        f"model {args.model}  corpus {args.corpus}  split {args.split}  utterances {res.greedy.utterances}"
    )
    if corpus.problems:
        print(f"skipped {len(corpus.problems)} utterances of the corpus (see the log)")
    print(f"{'':22s} {'CER':>8s} {'WER':>8s}")
    print(f"{'greedy':22s} {100 * res.greedy.cer:7.2f}% {100 * res.greedy.wer:7.2f}%")
    if res.beam is not None:
        print(f"{beam_name:22s} {100 * res.beam.cer:7.2f}% {100 * res.beam.wer:7.2f}%")
    print()
    head = f"{'speaker':20s} {'utts':>5s} {'CER greedy':>11s}"
    if res.beam is not None:
        head += f" {'CER beam':>9s}"
    print(head)
    for spk in sorted(res.per_speaker_greedy):
        g = res.per_speaker_greedy[spk]
        line = f"{spk:20s} {g.utterances:5d} {100 * g.cer:10.2f}%"
        if res.beam is not None:
            line += f" {100 * res.per_speaker_beam[spk].cer:8.2f}%"
        print(line)
    for utt_id, ref, hyp in res.samples[: args.show]:
        print(f"\n{utt_id}\n  ref: {ref}\n  hyp: {hyp}")
    if args.json is not None:
        figures = {
            "model": str(args.model),
            "corpus": str(args.corpus),
            "split": args.split,
            "utterances": res.greedy.utterances,
            "greedy": {"cer": res.greedy.cer, "wer": res.greedy.wer},
            "beam": {
                "cer": res.beam.cer,
                "wer": res.beam.wer,
                "size": args.beam_size,
                "char_lm_order": args.char_lm,
                "lm_weight": args.lm_weight if lm else 0.0,
                "word_score": args.word_score,
            }
            if res.beam
            else None,
            "per_speaker": {
                spk: {
                    "utterances": g.utterances,
                    "cer_greedy": g.cer,
                    "wer_greedy": g.wer,
                    "cer_beam": res.per_speaker_beam[spk].cer if res.beam else None,
                }
                for spk, g in sorted(res.per_speaker_greedy.items())
            },
            "loss": res.loss,
        }
        atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    return 0
