"""``gradnap report RESULT``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from gradnap.defaults import REPORT


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="build the paper's HTML report from a result file",
        description="Build the report (figures, silhouette table) from any result file.",
    )
    p.add_argument("result", type=Path, help="result file written by 'gradnap collect'")
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument(
        "--model", default=None, help="the model (for optimal inputs): file or 'default'"
    )
    p.add_argument(
        "--input-groups",
        default=",".join(REPORT.input_groups),
        help="groups of the input-layer figure",
    )
    p.add_argument("--input-grouping", default=REPORT.input_grouping)
    p.add_argument("--action-groups", default=",".join(REPORT.action_groups))
    p.add_argument("--action-grouping", default=REPORT.action_grouping)
    p.add_argument("--action-layer", default=None, help="layer of the action-potential plots")
    p.add_argument("--dendrogram-layer", default=None)
    p.add_argument("--dendrogram-grouping", default=REPORT.dendrogram_grouping)
    p.add_argument("--percentile", type=float, default=REPORT.dendrogram_percentile)
    p.set_defaults(func=_run)


def _split(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _run(args: argparse.Namespace) -> int:
    from gradnap.asr.modelfile import load_model
    from gradnap.fileio import check_writable
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
    model = load_model(args.model) if args.model else None
    index = build_report(args.result, args.out, model=model, config=config)
    print(f"report: {index}")
    return 0
