"""``gradnap report RESULT``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from gradnap.cli.common import RESULT_MODEL_HELP, result_model
from gradnap.defaults import REPORT


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="build the paper's HTML report from a result file",
        description="Build the report (figures, silhouette table) from any result file.",
    )
    p.add_argument("result", type=Path, help="result file written by 'gradnap collect'")
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--model", default=None, help=RESULT_MODEL_HELP)
    p.add_argument(
        "--input-groups",
        default=",".join(REPORT.input_groups),
        metavar="G,G,...",
        help="groups of the input-layer figure (GradNAPs beside NAvAIs)",
    )
    p.add_argument(
        "--input-grouping", default=REPORT.input_grouping, help="grouping of --input-groups"
    )
    p.add_argument(
        "--action-groups",
        default=",".join(REPORT.action_groups),
        metavar="G,G,...",
        help="groups of the action-potential plots",
    )
    p.add_argument(
        "--action-grouping", default=REPORT.action_grouping, help="grouping of --action-groups"
    )
    p.add_argument(
        "--action-layer",
        default=None,
        help="layer of the action-potential plots and NAP heatmaps (default: layer2 when "
        "the result has it, else the second hidden layer)",
    )
    p.add_argument(
        "--dendrogram-layer",
        default=None,
        help="layer of the dendrogram (default: the result's second-to-last layer, the last "
        "before the output)",
    )
    p.add_argument(
        "--dendrogram-grouping",
        default=REPORT.dendrogram_grouping,
        help="grouping whose profiles the dendrogram clusters",
    )
    p.add_argument(
        "--percentile",
        type=float,
        default=REPORT.dendrogram_percentile,
        help="the dendrogram is coloured by the cut at this percentile of the pairwise "
        "distances (docs/method.md §1.8)",
    )
    p.set_defaults(func=_run)


def _split(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _run(args: argparse.Namespace) -> int:
    from gradnap.fileio import check_writable
    from gradnap.method.result import Result
    from gradnap.report.paper import build_report

    check_writable(args.out, "--out", directory=True)
    config = dataclasses.replace(
        REPORT,
        input_groups=_split(args.input_groups),
        input_grouping=args.input_grouping,
        action_groups=_split(args.action_groups),
        action_grouping=args.action_grouping,
        action_layer=args.action_layer,
        dendrogram_layer=args.dendrogram_layer,
        dendrogram_grouping=args.dendrogram_grouping,
        dendrogram_percentile=args.percentile,
    )
    result = Result.load(args.result)
    model = result_model(result, args.model, args.result)
    index = build_report(result, args.out, model=model, config=config)
    print(f"report: {index}")
    return 0
