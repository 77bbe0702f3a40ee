"""``gradnap compare``: the largest differences between two result files, by label."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradnap.defaults import COLLECT


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="largest differences between two result files (e.g. of runs split differently)",
        description=(
            "Compare two result files of the same layers and groupings: per grouping and "
            "layer, the largest difference of the accumulated sums (any field) and of the "
            "GradNAP profiles, matched by label and relative to the array's (the profile's) "
            "largest absolute value. Exit status 0 when every relative difference is at "
            "most --tol and both hold the same labels, 1 otherwise."
        ),
    )
    p.add_argument("a", type=Path, help="result file A (.npz)")
    p.add_argument("b", type=Path, help="result file B (.npz)")
    p.add_argument(
        "--tol",
        type=float,
        default=COLLECT.compare_tol,
        help="largest relative difference accepted "
        f"(default: {COLLECT.compare_tol:g}, float32 rounding of per-chunk sums is ~1e-6)",
    )
    p.add_argument("--no-profiles", action="store_true", help="compare the sums only (faster)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gradnap.method.compare import compare_results

    report = compare_results(args.a, args.b, profiles=not args.no_profiles)
    print(report.table())
    worst = report.worst
    ok = report.within(args.tol)
    if worst is not None:
        where = f"{worst.grouping} {worst.layer or ''} {worst.what} {worst.label!r}"
        print(f"largest relative difference {worst.relative:.3g} ({where.replace('  ', ' ')})")
    print(f"{'same' if ok else 'DIFFERENT'} within --tol {args.tol:g}")
    return 0 if ok else 1
