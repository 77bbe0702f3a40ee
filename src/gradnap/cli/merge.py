"""``gradnap merge``: add up result files of shards or separate runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "merge",
        help="add up result files (shards of one run, or runs on different corpora)",
        description=(
            "Add the accumulators of several result files of the same model, layers, "
            "groupings and options into one result file. The same shard of the same corpus "
            "given twice is an error (its examples would count twice)."
        ),
    )
    p.add_argument("results", nargs="+", type=Path, help="result files (.npz)")
    p.add_argument("--out", required=True, type=Path, help="merged result file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gradnap.fileio import check_writable
    from gradnap.method.result import merge_results

    check_writable(args.out, "--out")
    merged = merge_results(args.results)
    merged.save(args.out)
    print(merged.summary())
    print(f"merged {len(args.results)} results into {args.out}")
    return 0
