"""``gradnap demo``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from gradnap.cli.common import HF_MODEL_HELP, MODEL_HELP
from gradnap.defaults import DEMO


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the paper end to end on the embedded default model or --model (synthesized corpus)",
        description=(
            "Synthesize (or reuse) an analysis corpus, load the shipped default model, collect "
            "GradNAPs for graphemes and phonemes in every layer, run every analysis and write an "
            "HTML report."
        ),
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="report directory (default: <cache>/demo)",
    )
    p.add_argument(
        "--utterances",
        type=int,
        default=None,
        help=(
            f"analysis corpus size (default: {DEMO.utterances}; {DEMO.attention_utterances} "
            "for an attention model, a Hugging Face model directory or a transformer, whose "
            "engine is slower)"
        ),
    )
    p.add_argument("--seed", type=int, default=DEMO.seed, help="analysis corpus seed")
    p.add_argument("--model", default=DEMO.model, help=MODEL_HELP + HF_MODEL_HELP)
    p.add_argument(
        "--corpus",
        type=Path,
        default=None,
        metavar="DIR",
        help="use this corpus instead of synthesizing one (default: synthesized under "
        "<cache>/corpora)",
    )
    p.add_argument(
        "--jobs", type=int, default=None, help="synthesis worker processes (default: the cores)"
    )
    p.add_argument(
        "--folds",
        type=int,
        default=DEMO.folds,
        help=(
            f"folds of the per-fold sums (default: {DEMO.folds}); the report's cross-validated "
            "cluster score needs at least 4, 1 keeps totals only (docs/method.md §6)"
        ),
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gradnap.report.demo import demo_utterances, run_demo

    utterances = args.utterances if args.utterances is not None else demo_utterances(args.model)
    config = dataclasses.replace(
        DEMO, utterances=utterances, seed=args.seed, model=args.model, folds=args.folds
    )
    result = run_demo(args.out, config=config, corpus_dir=args.corpus, jobs=args.jobs)
    print(result.summary())
    return 0
